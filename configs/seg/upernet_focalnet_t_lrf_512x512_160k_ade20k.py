# UPerNet + FocalNet-T (lrf: 3 focal levels, kernels 9/11/13), ADE20K 512x512, 160k iterations.
# Official: upernet_focalnet_tiny_patch4_512x512_160k_ade20k_lrf.py. Published: 46.8 / 47.8 mIoU.
_base_ = './upernet_focalnet_t_srf_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        arch='tiny_lrf',
        focal_levels=[3, 3, 3, 3],
        init_cfg=dict(checkpoint='focalnet://tiny_lrf')))
