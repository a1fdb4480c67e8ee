# FocalNet on CIFAR-10 (32x32, trained from scratch): the free-form arch dict on small images.
# Arch choice: a 4x4 stem on 32x32 leaves 8x8 tokens and a 1x1 last stage, where the focal convs
# see nothing but padding. A 2x2 stem keeps 16x16 tokens, and three stages (16 -> 8 -> 4 tokens,
# 96 -> 192 -> 384 channels, depths 2/6/2 like FocalNet-T without its last stage) end on a 4x4
# map where the 3x3 / 5x5 focal kernels (2 levels, window 3) still cover real neighbours and the
# global level sees the whole image. About 7M parameters.
# Recipe: a starting point (no published FocalNet CIFAR result), the ImageNet recipe scaled down:
# AdamW 1e-3 @ batch 128, wd 0.05 without decay on 1-D parameters, 10 warm-up epochs, cosine,
# 200 epochs, grad clip 5; random crop (pad 4) + flip, Mixup/CutMix, label smoothing 0.1.
#   python tools/train.py configs/cls/focalnet_cifar10_32x32.py    (data in data/cifar10/cifar-10-batches-py)
_base_ = [
    'mmpretrain::_base_/datasets/cifar10_bs16.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/safe_training.py',
]

# the run's safety, as configs/_base_/safe_training.py says (which also imports focalnet_mm)
env_cfg = dict(dist_cfg=dict(timeout=900))

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='FocalNet',
        arch=dict(patch_size=2, embed_dim=96, depths=(2, 6, 2), focal_levels=2, focal_windows=3),
        drop_path_rate=0.1,
        out_indices=(2, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=384,
        init_cfg=None,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)

train_dataloader = dict(batch_size=128, num_workers=4)
val_dataloader = dict(batch_size=256, num_workers=4)
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='FiniteOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=10, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=10),
]
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=200, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128)
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', interval=10, max_keep_ckpts=3, save_best='auto'))
