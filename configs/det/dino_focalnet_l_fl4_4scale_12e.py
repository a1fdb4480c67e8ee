# DINO 4-scale, FocalNet-L fl4 (ImageNet-22k 384, 4 focal levels, kernels 3/5/7/9), 12 epochs, COCO.
# Published: 58.0 box AP (detrex projects/dino, DINO-FocalNet-Large-4scale, FocalNet-384-LRF-4Level,
#   IN22k, 12 epochs; config dino_focalnet_large_lrf_384_fl4_4scale_12ep.py).
# Backbone flags as FocalNet-DINO's build_focalnet('focalnet_L_384_22k_fl4'): levels 4, windows 3
# and normalize_modulator=True. detrex's fl4 configs change only levels/windows and so keep its
# FocalNet-L default normalize_modulator=False; the flag cannot be seen in the weights, we follow
# the code that released the fl4 weights (override with model.backbone.normalize_modulator=False
# to reproduce detrex's run exactly).
_base_ = './dino_focalnet_l_fl3_4scale_12e.py'

pretrained = 'focalnet://large_fl4'
model = dict(
    backbone=dict(
        arch='large_fl4',
        focal_levels=[4, 4, 4, 4],
        focal_windows=[3, 3, 3, 3],
        normalize_modulator=True,
        init_cfg=dict(checkpoint=pretrained)))
