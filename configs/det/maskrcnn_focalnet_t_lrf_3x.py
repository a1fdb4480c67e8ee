# Mask R-CNN + FPN, FocalNet-T lrf (3 focal levels, kernels 9/11/13), 3x schedule, COCO.
# Published: 48.0 box AP / 42.9 mask AP. Official config (microsoft/FocalNet, mmdet 2.x):
#   detection/configs/focalnet/mask_rcnn_focalnet_tiny_patch4_mstrain_480-800_adamw_3x_coco_lrf.py
#
# Naming scheme of configs/det: <detector>_focalnet_<t|s|b>_<srf|lrf>_<1x|3x>.py
#   detector: maskrcnn | cascade_maskrcnn | atss | sparsercnn (as the official checkpoint names);
#   srf = 2 focal levels, lrf = 3 levels (ImageNet weights focalnet_<size>_<srf|lrf>.pth).
# Inheritance: this file is the root of the Mask R-CNN 3x family (S from T, B from S, srf from
# lrf), maskrcnn_focalnet_t_lrf_1x.py the root of the 1x family; each child is a small diff.
#
# mmdet's Swin-T 3x config carries the FocalNet recipe already: AdamW lr 1e-4, betas
# (0.9, 0.999), wd 0.05, no decay for 'norm' parameters, DETR-style multi-scale (short side
# 480..800 step 32, long side <= 1333) or resize {400,500,600} -> crop 384..600 -> multi-scale,
# random flip, 36 epochs with LR steps at 27 and 33, 2 images per GPU on 8 GPUs. We swap the
# backbone and restore the official warm-up (see param_scheduler).
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
    '../_base_/safe_training.py',
]

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
        focal_windows=[9, 9, 9, 9],  # ImageNet kernels 3/5/7 are zero-padded to 9/11/13
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

# The official configs set samples_per_gpu=1 but train with `--cfg-options
# data.samples_per_gpu=2` on 8 GPUs (detection/README.md): 16 images per iteration.
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Swin's own no-decay keys (absolute_pos_embed, relative_position_bias_table) name no FocalNet
# parameter (the official configs still list them); 'norm' catches every LayerNorm.
optim_wrapper = dict(type='FiniteOptimWrapper',
                     paramwise_cfg=dict(_delete_=True, custom_keys={'norm': dict(decay_mult=0.)}))

# mmdet 2.x `lr_config = dict(warmup='linear', warmup_iters=500, warmup_ratio=0.001,
# step=[27, 33])` (its schedule_1x base) in mmengine spelling. mmdet's Swin 3x base warms up over
# 1000 iterations instead; the step epochs keep their numbers (a 2.x step s and a 3.x milestone s
# both lower the LR from the (s+1)-th epoch on).
max_epochs = 36
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1)
]
# The official runs trained in mixed precision (apex, use_fp16=True): add --amp to tools/train.py.
