# Sparse R-CNN + FPN (300 proposals), FocalNet-T lrf with windows [11, 9, 9, 7] (3 levels), 3x.
# Published: 49.9 box AP. Official config (microsoft/FocalNet, mmdet 2.x):
#   detection/configs/focalnet/sparse_rcnn_focalnet_tiny_fpn_300_proposals_crop_mstrain_480-800_3x_coco_lrf.py
#   (model base: detection/configs/_base_/models/sparse_rcnn_focalnet_fpn.py)
# mmdet's Sparse R-CNN 300-proposal crop/multi-scale 3x config is the official recipe as is:
# AdamW lr 2.5e-5, wd 1e-4 (no norm exemption: the official Sparse R-CNN base has none),
# gradient clipping max_norm 1, warm-up 500 iterations, 36 epochs with steps at 27/33,
# 2 images per GPU on 8 GPUs. Only the backbone changes.
_base_ = [
    'mmdet::sparse_rcnn/sparse-rcnn_r50_fpn_300-proposals_crop-ms-480-800-3x_coco.py',
    '../_base_/safe_training.py',
]

# the run's safety, as configs/_base_/safe_training.py says (which also imports focalnet_mm)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
optim_wrapper = dict(type='FiniteOptimWrapper')
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
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
