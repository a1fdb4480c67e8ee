# UPerNet + FocalNet-S (srf: 2 focal levels, kernels 9/11), ADE20K 512x512, 160k iterations.
# Official: upernet_focalnet_small_patch4_512x512_160k_ade20k_srf.py. Published: 49.3 / 50.1 mIoU.
_base_ = './upernet_focalnet_t_srf_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        arch='small_srf',
        init_cfg=dict(checkpoint='focalnet://small_srf')))
