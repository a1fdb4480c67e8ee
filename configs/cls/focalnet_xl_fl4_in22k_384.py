# FocalNet-XL with 4 focal levels (window 3: kernels 3/5/7/9),
# ImageNet-22k at 384x384: the released focalnet_xlarge_lrf_384_fl4.pth with its head.
# Data and evaluation as focalnet_l_fl3_in22k_384.py.
#   python tools/test.py configs/cls/focalnet_xl_fl4_in22k_384.py focalnet_xlarge_lrf_384_fl4.pth
_base_ = './focalnet_l_fl3_in22k_384.py'

# Released weights: focalnet://xlarge_fl4; sources: focalnet_mm/weights/sources.py
model = dict(backbone=dict(arch='xlarge_fl4'), head=dict(in_channels=2048))
