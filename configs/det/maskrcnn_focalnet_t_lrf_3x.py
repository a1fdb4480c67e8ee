# Mask R-CNN + FPN, FocalNet-T (lrf: 3 focal levels, kernels 9/11/13), 3x schedule, COCO.
# Official recipe (microsoft/FocalNet detection): AdamW 1e-4, wd 0.05, no decay for norms,
# multi-scale 480-800 + crop augmentation, 36 epochs with steps at 27/33, batch 16 (8 GPUs x 2).
# Published: 48.0 box AP / 42.9 mask AP. mmdet's Swin-T 3x config is the same recipe; we swap the
# backbone.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'

custom_imports = dict(imports=['focalnet_mm'], allow_failed_imports=False)

pretrained = 'https://projects4jw.blob.core.windows.net/focalnet/release/classification/focalnet_tiny_lrf.pth'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='FocalNet',
        arch='tiny_lrf',
        focal_windows=[9, 9, 9, 9],
        focal_levels=[3, 3, 3, 3],
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

# the official configs also exempt every parameter whose name contains 'norm' from weight decay
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}, _delete_=True))
auto_scale_lr = dict(enable=False, base_batch_size=16)
