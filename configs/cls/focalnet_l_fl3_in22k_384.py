# FocalNet-L (3 focal levels, window 5: kernels 5/7/9; conv stem, post-norm, layerscale),
# ImageNet-22k (21842 classes) at 384x384: the released focalnet_large_lrf_384.pth with its head.
# Data as focalnet_h_fl3_in22k.py. Evaluation follows the official build_transform for a 384
# model: short side int(256/224*384) = 438 (bicubic), centre crop 384, ImageNet mean/std (timm's
# default for these weights resizes straight to 384 instead, crop_pct 1.0).
#   python tools/test.py configs/cls/focalnet_l_fl3_in22k_384.py focalnet_large_lrf_384.pth
_base_ = './focalnet_h_fl3_in22k.py'

img_size = 384

# Released weights: focalnet://large_fl3; sources: focalnet_mm/weights/sources.py
model = dict(backbone=dict(arch='large_fl3'), head=dict(in_channels=1536))

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
    dict(type='ResizeEdge', scale=int(256 / 224 * img_size), edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
