# FocalNet-XL (3 focal levels, window 5: kernels 5/7/9),
# ImageNet-22k at 384x384: the released focalnet_xlarge_lrf_384.pth with its head.
# Data and evaluation as focalnet_l_fl3_in22k_384.py.
#   python tools/test.py configs/cls/focalnet_xl_fl3_in22k_384.py focalnet_xlarge_lrf_384.pth
_base_ = './focalnet_l_fl3_in22k_384.py'

# Released weights: focalnet://xlarge_fl3; sources: focalnet_mm/weights/sources.py
model = dict(backbone=dict(arch='xlarge_fl3'), head=dict(in_channels=2048))
