# The README main job on a laptop: Mask R-CNN FocalNet-T (the entry config, unchanged model) trained
# from scratch on the synthetic shapes of tools/data/make_demo_coco.py, on CPU.
#   python tools/run_demo.py          (generates the data, trains, evaluates each epoch, prints mAP)
# What differs from configs/maskrcnn_focalnet_t_3x.py, and why:
# - no ImageNet weights (init_cfg=None): the demo must run offline on a fresh clone; the backbone
#   is trained from scratch, which simple shapes allow;
# - 3 classes, ~150 px images, single-scale training, fewer sampled RoIs/proposals (100 at test
#   time), fused AdamW: CPU time;
# - a short schedule with a higher LR and no drop path (from scratch, few iterations), frequent
#   logging, COCO evaluation after every epoch (so mAP rises in the log and the curves).
_base_ = '../maskrcnn_focalnet_t_3x.py'

data_root = 'data/demo_coco/'
dataset_layout_hint = 'the demo data; generate it with: python tools/data/make_demo_coco.py'
metainfo = dict(classes=('circle', 'rectangle', 'triangle'),
                palette=[(220, 20, 60), (0, 130, 200), (60, 180, 75)])
image_scale = (160, 128)  # (long, short) side limits, keep ratio
max_epochs = 3

model = dict(
    backbone=dict(init_cfg=None, drop_path_rate=0.0),
    roi_head=dict(bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    # <= 3 objects per image: 100 proposals are plenty, and each evaluation takes ~2/3 of the time
    # (measured on the trained demo: 15 s instead of 21 s per evaluation, same or higher mAP)
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json', metric=['bbox', 'segm'])
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_interval=1)
optim_wrapper = dict(optimizer=dict(lr=5e-4, fused=True), clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[max_epochs - 1], gamma=0.1),
]
auto_scale_lr = dict(base_batch_size=2)  # the demo's own batch: --auto-scale-lr is a no-op here

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=1, max_keep_ckpts=1))  # ~560 MB each (weights + AdamW state)
log_processor = dict(window_size=10)
