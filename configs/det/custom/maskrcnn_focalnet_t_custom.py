# Mask R-CNN + FocalNet-T (lrf, kernels 9/11/13) on your own COCO-format data set.
# Copy this file, edit the block below, then (docs/custom_dataset.md):
#   python tools/browse_dataset.py configs/det/custom/maskrcnn_focalnet_t_custom.py --out work_dirs/browse
#   python tools/train.py configs/det/custom/maskrcnn_focalnet_t_custom.py
# Copy rather than inherit: num_classes and the schedule are computed from the values below when
# this file is read, so a child config that only changes `classes` would keep the old heads
# (tools/train.py refuses such a config with a one-line error).
_base_ = '../maskrcnn_focalnet_t_lrf_3x.py'

# ---------------------------------------------------------------- edit these
data_root = 'data/my_coco/'
# the category names of your JSON, in the JSON's order: mmdet numbers the labels in the order of
# its `categories`, whatever the order here (check_dataset / train refuse another order and
# print the line to paste)
classes = ('cat', 'dog')
train_ann_file = 'annotations/train.json'  # this and the next three: relative to data_root
train_img_dir = 'train/'
val_ann_file = 'annotations/val.json'
val_img_dir = 'val/'
image_scale = (640, 480)  # (long, short) side limits, ratio kept: about your images' own size
max_epochs = 12
# ImageNet FocalNet-T lrf (the COCO recipe's weights; fetched once, or read from
# $FOCALNET_WEIGHTS_DIR offline: focalnet-download-weights tiny_lrf --dir DIR); None trains the
# backbone from scratch (no download; needs far more data and epochs)
pretrained = 'focalnet://tiny_lrf'
# -----------------------------------------------------------------------------

num_classes = len(classes)
metainfo = dict(classes=classes)  # add palette=[(r, g, b), ...] (one per class, same order) for fixed colours
dataset_layout_hint = (f'your COCO-format set: {data_root}{train_ann_file} with images in '
                       f'{data_root}{train_img_dir} (and the same for val); edit data_root and the '
                       'file names at the top of the config (docs/custom_dataset.md)')

model = dict(
    backbone=dict(init_cfg=pretrained and dict(type='Pretrained', checkpoint=pretrained)),
    roi_head=dict(bbox_head=dict(num_classes=num_classes), mask_head=dict(num_classes=num_classes)))

# single scale with +-20 % jitter around image_scale, flip: the recipe's multi-scale at your size
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_scale, ratio_range=(0.8, 1.2), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file=train_ann_file,
                 data_prefix=dict(img=train_img_dir), pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file=val_ann_file,
                 data_prefix=dict(img=val_img_dir), pipeline=test_pipeline))
test_dataloader = val_dataloader
# classwise: one AP per class in the log and as metrics coco/bbox_<class>_precision
val_evaluator = dict(ann_file=data_root + val_ann_file, metric=['bbox', 'segm'], classwise=True)
test_evaluator = val_evaluator

# The schedule in proportion to the run, whatever the data set's size: linear warm-up over the
# first 10 % of the run's iterations (LinearWarmupLR: no `end`, the Runner gives it the run;
# at least 2 iterations, at most the run, one log line when it is not 10 %), LR x0.1 at 3/4 and
# 11/12 of the epochs (the 3x recipe's 27 and 33 of 36), validation every epoch.
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='LinearWarmupLR', start_factor=0.001, share=0.1, by_epoch=False),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, gamma=0.1,
         milestones=[max(1, round(max_epochs * 3 / 4)), max(1, round(max_epochs * 11 / 12))]),
]
default_hooks = dict(
    logger=dict(interval=10),
    # the best epoch by box mAP is kept (best_coco_bbox_mAP_epoch_N.pth) next to the latest
    checkpoint=dict(interval=1, max_keep_ckpts=1, save_best='coco/bbox_mAP', rule='greater'))
log_processor = dict(window_size=10)
