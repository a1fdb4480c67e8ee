# UPerNet + FocalNet-B (lrf: 3 focal levels, kernels 9/11/13), ADE20K 512x512, 160k iterations.
# Official: upernet_focalnet_base_patch4_512x512_160k_ade20k_lrf.py. Published: 50.5 / 51.4 mIoU.
_base_ = './upernet_focalnet_b_srf_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        arch='base_lrf',
        focal_levels=[3, 3, 3, 3],
        init_cfg=dict(checkpoint='focalnet://base_lrf')))
