# FocalNet-T (srf: 2 focal levels, kernels 3/5), ImageNet-1k 224x224. Published top-1 82.1.
# The base of every ImageNet-1k config here: the official classification recipe (microsoft/FocalNet
# config.py + configs/focalnet_tiny_srf.yaml) written as a diff on MMPretrain's Swin bases, which
# share it: AdamW lr 1e-3 for batch 1024 (5e-4 per 512, linearly scaled), wd 0.05 with no decay
# for norms, biases and other 1-D parameters, 20 linear warm-up epochs from 1e-6, cosine to 1e-5,
# 300 epochs, grad-norm clip 5, RandomResizedCrop + flip + RandAugment rand-m9-mstd0.5-inc1 +
# random erasing 0.25 (per-pixel), Mixup 0.8 / CutMix 1.0 (one of them per batch), label
# smoothing 0.1. Evaluation: short side 256 (bicubic), centre crop 224, ImageNet mean/std.
#
#   evaluate the released weights (the official file, head included):
#     python tools/test.py configs/cls/focalnet_t_srf_in1k.py focalnet_tiny_srf.pth
#   train from scratch, 8 GPUs x 128 images (the official batch 1024; --amp as in the official O1):
#     bash tools/dist_train.sh configs/cls/focalnet_t_srf_in1k.py 8 --amp
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/safe_training.py',
]

# the run's safety, as configs/_base_/safe_training.py says (which also imports focalnet_mm)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
env_cfg = dict(dist_cfg=dict(timeout=900))

# Released weights: focalnet://tiny_srf; sources: focalnet_mm/weights/sources.py
model = dict(
    type='ImageClassifier',
    # out_indices = the last stage only: its norm{last} is the official final `norm`
    backbone=dict(type='FocalNet', arch='tiny_srf', drop_path_rate=0.2, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        init_cfg=None,  # the classifier-level TruncNormal below is the official head init
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)

train_dataloader = dict(batch_size=128)
optim_wrapper = dict(type='FiniteOptimWrapper', clip_grad=dict(max_norm=5.0))
# mmpretrain's schedule says by_epoch=True; the loop it means, resumable mid-epoch
train_cfg = dict(_delete_=True, type='ResumableEpochBasedTrainLoop', max_epochs=300, val_interval=1)
