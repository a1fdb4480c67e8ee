# UPerNet + FocalNet-B (srf: 2 focal levels, kernels 9/11), ADE20K 512x512, 160k iterations.
# Official: upernet_focalnet_base_patch4_512x512_160k_ade20k_srf.py. Published: 50.2 / 51.1 mIoU.
_base_ = './upernet_focalnet_t_srf_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        arch='base_srf',
        init_cfg=dict(checkpoint='focalnet://base_srf')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
