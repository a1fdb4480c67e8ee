# DINO 5-scale, FocalNet-H fl4 (ImageNet-22k 224, embed 352), 12 epochs, COCO. NOT OFFICIAL:
# no FocalNet-H DINO recipe, result or checkpoint was published. FocalNet-DINO's backbone code
# defines the model (build_focalnet('focalnet_H_224_22k_fl4'): levels 4, windows 3,
# use_conv_embed, use_postln, use_layerscale, use_postln_in_modulation, no normalize_modulator);
# everything else is the L fl4 5-scale recipe with the H channels in the neck.
# Memory: see docs/dino.md; dino_focalnet_h_fl4_5scale_12e_fsdp.py shards it over the GPUs.
_base_ = './dino_focalnet_l_fl4_5scale_12e.py'

pretrained = 'focalnet://huge_fl4'
model = dict(
    backbone=dict(arch='huge_fl4', normalize_modulator=False, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[352, 704, 1408, 2816]))
