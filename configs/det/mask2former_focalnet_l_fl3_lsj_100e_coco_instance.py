# Mask2Former + FocalNet-L (ImageNet-22k 384, fl3), COCO instance segmentation, LSJ 1024, 100 epochs.
# Target: not reported. The FocalNet paper reports Mask2Former on COCO panoptic (57.9 PQ) and ADE20K
#   (58.5 mIoU) only; the reference it compares with, Swin-L + Mask2Former (200 queries, 100
#   epochs), reaches 50.1 mask AP (Mask2Former paper). NOT REPRODUCED here.
#
# mmdet 3.3 ships Swin-L Mask2Former for panoptic only (instance: R-50/101, Swin-T/S). This file is
# the FocalNet-L panoptic config (backbone, optimizer keys, 200 queries, 100-epoch schedule, batch
# 8 x 2: see its header) with mmdet's own panoptic -> instance diff, the one
# mask2former_r50_8xb2-lsj-50e_coco.py applies to its panoptic base, field by field:
#   classes         80 things, 0 stuff; classification weights 80 x 1.0 + 0.1 for "no object"
#   preprocessor    no semantic-map padding (pad_seg False) in the 1024x1024 batch padding
#   test            panoptic_on False (instance results only, top 100 per image)
#   data            CocoDataset, instances_{train,val}2017.json; train: LoadAnnotations(bbox, mask),
#                   LSJ as panoptic, FilterAnnotations(by_mask); test: resize (1333, 800)
#   evaluation      CocoMetric bbox + segm
# One change to that diff: data_prefix drops the panoptic 'seg' folder that mmdet's merge keeps
# (CocoDataset never reads it, but the tools check that every data folder exists).
_base_ = './mask2former_focalnet_l_fl3_lsj_100e_coco_panoptic.py'

num_things_classes = 80
num_stuff_classes = 0
num_classes = num_things_classes + num_stuff_classes
image_size = (1024, 1024)
data_preprocessor = dict(
    pad_seg=False,
    batch_augments=[dict(type='BatchFixedSizePad', size=image_size, img_pad_value=0, pad_mask=True,
                         mask_pad_value=0, pad_seg=False)])
model = dict(
    data_preprocessor=data_preprocessor,
    panoptic_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])),
    panoptic_fusion_head=dict(num_things_classes=num_things_classes, num_stuff_classes=num_stuff_classes),
    test_cfg=dict(panoptic_on=False))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True, backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), resize_type='Resize',
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size, crop_type='absolute', recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-5, 1e-5), by_mask=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True, backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
dataset_type = 'CocoDataset'
data_root = 'data/coco/'
train_dataloader = dict(
    dataset=dict(type=dataset_type, ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(_delete_=True, img='train2017/'), pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(type=dataset_type, ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(_delete_=True, img='val2017/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True,
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
