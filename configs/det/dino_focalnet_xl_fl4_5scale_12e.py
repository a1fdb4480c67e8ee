# DINO 5-scale, FocalNet-XL fl4 (ImageNet-22k 384, embed 256), 12 epochs, COCO. NOT OFFICIAL:
# no FocalNet-XL DINO recipe, result or checkpoint was published. FocalNet-DINO's backbone code
# defines the model (build_focalnet('focalnet_XL_384_22k_fl4'): levels 4, windows 3,
# use_conv_embed, use_postln, use_layerscale, normalize_modulator=True); everything else is the
# L fl4 5-scale recipe with the XL channels in the neck.
# normalize_modulator: FocalNet-DINO's code says True, the classification yaml of the XL fl4
# ImageNet weights is disputed (docs/dino.md); the loader refuses the weights if their own
# config says otherwise.
_base_ = './dino_focalnet_l_fl4_5scale_12e.py'

pretrained = 'focalnet://xlarge_fl4'
model = dict(
    backbone=dict(arch='xlarge_fl4', normalize_modulator=True, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
