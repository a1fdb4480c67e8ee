# UPerNet + FocalNet-S (lrf: 3 focal levels, kernels 9/11/13), ADE20K 512x512, 160k iterations.
# Official: upernet_focalnet_small_patch4_512x512_160k_ade20k_lrf.py. Published: 49.1 / 50.1 mIoU.
_base_ = './upernet_focalnet_t_srf_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        arch='small_lrf',
        focal_levels=[3, 3, 3, 3],
        init_cfg=dict(checkpoint='focalnet://small_lrf')))
