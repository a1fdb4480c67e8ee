# FocalNet-L with 4 focal levels (window 3: kernels 3/5/7/9; normalize_modulator as the official yaml),
# ImageNet-22k at 384x384: the released focalnet_large_lrf_384_fl4.pth with its head.
# Data and evaluation as focalnet_l_fl3_in22k_384.py.
#   python tools/test.py configs/cls/focalnet_l_fl4_in22k_384.py focalnet_large_lrf_384_fl4.pth
_base_ = './focalnet_l_fl3_in22k_384.py'

# Released weights: focalnet://large_fl4; sources: focalnet_mm/weights/sources.py
model = dict(backbone=dict(arch='large_fl4'))
