# FocalNet-H with 4 focal levels (window 3), ImageNet-22k at 224x224: the released
# focalnet_huge_lrf_224_fl4.pth with its head. Data and evaluation as focalnet_h_fl3_in22k.py.
#   python tools/test.py configs/cls/focalnet_h_fl4_in22k.py focalnet_huge_lrf_224_fl4.pth
_base_ = './focalnet_h_fl3_in22k.py'

# Released weights: focalnet://huge_fl4; sources: focalnet_mm/weights/sources.py
model = dict(backbone=dict(arch='huge_fl4'))
