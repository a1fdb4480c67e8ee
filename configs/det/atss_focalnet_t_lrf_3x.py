# ATSS + FPN, FocalNet-T lrf with per-stage windows [11, 9, 9, 7] (3 levels), 3x, COCO.
# Published: 49.6 box AP. Official config (microsoft/FocalNet, mmdet 2.x):
#   detection/configs/focalnet/atss_focalnet_tiny_patch4_fpn_3x_coco_lrf.py
#   (model base: detection/configs/_base_/models/atss_focalnet_fpn.py)
# mmdet's ATSS R-50 config gives the model; the FocalNet recipe (AdamW, no decay for norms,
# multi-scale + crop, 36 epochs) is the one of Mask R-CNN without masks.
_base_ = ['mmdet::atss/atss_r50_fpn_1x_coco.py', '../_base_/safe_training.py']

# the run's safety, as configs/_base_/safe_training.py says (which also imports focalnet_mm)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
env_cfg = dict(dist_cfg=dict(timeout=900))

pretrained = 'focalnet://tiny_lrf'
model = dict(
    backbone=dict(
        _delete_=True,
        type='FocalNet',
        arch='tiny_lrf',
        focal_levels=[3, 3, 3, 3],
        focal_windows=[11, 9, 9, 7],
        drop_path_rate=0.3,
        out_indices=(1, 2, 3),  # strides 8/16/32: no norm0, as the official model
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # FPN on all three inputs, two extra levels on the P5 output (add_extra_convs='on_output',
    # num_outs=5 come from the mmdet base, which reaches the same levels from four inputs with
    # start_level=1)
    neck=dict(in_channels=[192, 384, 768], start_level=0))

# mmdet 2.x AutoAugment(policies=[...]) is RandomChoice(transforms=[...]) in mmdet 3.x, and
# Resize(img_scale=[...], multiscale_mode='value') is RandomChoiceResize(scales=[...]); the 2.x
# `override=True` of the second resize is the 3.x default. Normalize/Pad live in the model's
# data_preprocessor (pad_size_divisor=32).
multi_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
                (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=multi_scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)],
                     keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=multi_scales, keep_ratio=True)
            ]
        ]),
    dict(type='PackDetInputs')
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
auto_scale_lr = dict(enable=False, base_batch_size=16)

optim_wrapper = dict(
    type='FiniteOptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))

max_epochs = 36
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1)
]
# The official run trained in mixed precision (apex, use_fp16=True): add --amp to tools/train.py.
