# FocalNet for small images (64x64, e.g. Tiny-ImageNet, 200 classes), trained from scratch: a
# deeper, thinner FocalNet written as a free-form arch dict (any FocalNet keyword works there,
# and explicit backbone keywords override it). Patch 4 gives 16x16 tokens; four stages
# (16 -> 8 -> 4 -> 2 tokens, 64 -> 128 -> 256 -> 512 channels, depths 3/3/16/3). About 23M
# parameters. The trained backbone is the feature extractor: its stage maps come from
#   model.extract_feat(inputs, stage='backbone')          (norm3 of the last stage), or load the
# checkpoint into FocalNet(arch=<the same dict>, out_indices=(0, 1, 2, 3)) for all four stages
# (norm0..2 are then new, as for the ImageNet weights in detection).
# Recipe: a starting point (no published FocalNet result at 64x64): the official ImageNet recipe
# at batch 256 (AdamW 5e-4 x 256/512, wd 0.05 without decay on 1-D parameters, cosine with 10
# warm-up epochs, 100 epochs, grad clip 5, RandAugment, random erasing, Mixup/CutMix, label
# smoothing 0.1).
# Data: data/tiny-imagenet/{train,val}/<class>/*.JPEG (class-folder layout; classes = folder names).
#   python tools/train.py configs/cls/focalnet_p4_e64_tinyimagenet_64x64.py
_base_ = './focalnet_t_srf_in1k.py'

num_classes = 200
img_size = 64

model = dict(
    backbone=dict(
        _delete_=True,
        type='FocalNet',
        arch=dict(patch_size=4, embed_dim=64, depths=(3, 3, 16, 3), focal_levels=2,
                  focal_windows=3),
        drop_path_rate=0.1,
        out_indices=(3, )),
    head=dict(num_classes=num_classes, in_channels=512))
data_preprocessor = dict(num_classes=num_classes)

bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02,
         max_area_ratio=1 / 3, fill_color=bgr_mean, fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=256,
    dataset=dict(_delete_=True, type='CustomDataset', data_root='data/tiny-imagenet',
                 data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=256,
    dataset=dict(_delete_=True, type='CustomDataset', data_root='data/tiny-imagenet',
                 data_prefix='val', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=5e-4 * 256 / 512))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=10, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=10),
]
train_cfg = dict(max_epochs=100)
auto_scale_lr = dict(base_batch_size=256)
