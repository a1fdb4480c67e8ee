# UPerNet + FocalNet-T (srf: 2 focal levels, kernels 9/11), ADE20K 512x512, 160k iterations.
# Official recipe (microsoft/FocalNet segmentation/configs/focalnet/
# upernet_focalnet_tiny_patch4_512x512_160k_ade20k_srf.py): AdamW 6e-5, wd 0.01, no decay for
# norms, poly LR (power 1) after 1500 linear warm-up iterations, drop_path 0.3, UPerHead 512
# channels + FCN auxiliary head on stage 2 (loss weight 0.4), batch 16 (8 GPUs x 2).
# Published: 46.5 mIoU single-scale / 47.2 multi-scale (tools/test.py --tta).
# mmseg's Swin-T UPerNet config is the same recipe (optimizer, schedule, data, heads); we swap
# the backbone and keep only the 'norm' no-decay key.
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    '../_base_/safe_training.py',
]

# the run's safety, as configs/_base_/safe_training.py says (which also imports focalnet_mm)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
env_cfg = dict(dist_cfg=dict(timeout=900))

pretrained = 'focalnet://tiny_srf'
model = dict(
    backbone=dict(
        _delete_=True,
        type='FocalNet',
        arch='tiny_srf',
        focal_windows=[9, 9, 9, 9],
        focal_levels=[2, 2, 2, 2],
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=384, in_index=2, num_classes=150))

# the official configs exempt every parameter whose name contains 'norm' from weight decay
# (FocalNet has no position embeddings or relative position tables, Swin's other two keys)
optim_wrapper = dict(type='FiniteOptimWrapper', paramwise_cfg=dict(_delete_=True, custom_keys={'norm': dict(decay_mult=0.)}))
# mmcv-1.x 'poly' + linear warm-up, as the official runs used it: the poly decay runs from
# iteration 0 and the warm-up multiplies it (mmseg's Swin config starts poly at 1500 instead,
# a 1% higher peak). Both mmengine schedulers are chainable, so they compose the same way.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=160000),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
