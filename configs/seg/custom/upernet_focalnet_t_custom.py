# UPerNet + FocalNet-T (lrf, kernels 9/11/13) on your own semantic segmentation set: images and
# label maps (one PNG per image whose pixel values are class indices) in mmseg's folder layout
#   <data_root>/img_dir/{train,val}/NAME<img_suffix>    <data_root>/ann_dir/{train,val}/NAME<seg_map_suffix>
# (the four folder names are set below)
# Copy this file, edit the block below, then (docs/custom_dataset.md):
#   python tools/browse_dataset.py configs/seg/custom/upernet_focalnet_t_custom.py --out work_dirs/browse
#   python tools/train.py configs/seg/custom/upernet_focalnet_t_custom.py
# Copy rather than inherit: num_classes and the schedule are computed from the values below when
# this file is read (tools/train.py refuses a child config whose heads no longer fit `classes`).
_base_ = '../upernet_focalnet_t_lrf_512x512_160k_ade20k.py'

# ---------------------------------------------------------------- edit these
data_root = 'data/my_seg/'
classes = ('background', 'road', 'car')  # label value i is classes[i] (after reduce_zero_label)
palette = [(0, 0, 0), (128, 64, 128), (0, 0, 142)]  # one RGB colour per class, for the figures
reduce_zero_label = False  # True when 0 means "unlabelled": ignored, and value i is classes[i - 1]
img_suffix = '.jpg'  # image NAME.jpg has the label map NAME.png
seg_map_suffix = '.png'
train_img_dir = 'img_dir/train'  # this and the next three: relative to data_root
train_ann_dir = 'ann_dir/train'
val_img_dir = 'img_dir/val'
val_ann_dir = 'ann_dir/val'
image_scale = (1024, 512)  # (long, short) side limits, ratio kept: about your images' own size
crop_size = (512, 512)  # training crops (h, w) after a random 0.5-2x resize around image_scale
max_epochs = 50
# ImageNet FocalNet-T lrf (the ADE20K recipe's weights; fetched once, or read from
# $FOCALNET_WEIGHTS_DIR offline: focalnet-download-weights tiny_lrf --dir DIR); None trains the
# backbone from scratch (no download; needs far more data and epochs)
pretrained = 'focalnet://tiny_lrf'
# -----------------------------------------------------------------------------

num_classes = len(classes)
metainfo = dict(classes=classes, palette=palette)
dataset_layout_hint = (f'your images in {data_root}{train_img_dir}/ and {data_root}{val_img_dir}/, '
                       f'label maps in {data_root}{train_ann_dir}/ and {data_root}{val_ann_dir}/; '
                       'edit data_root and the folders at the top of the config '
                       '(docs/custom_dataset.md)')

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=pretrained and dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes from the dataset (mmseg's way)
    dict(type='RandomResize', scale=image_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
# multi-scale + flip test (tools/test.py --tta): mmseg's ratios, around image_scale (mmseg's ADE20K
# base resizes the original images by these ratios, which for large images costs many times more)
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int(image_scale[0] * r), int(image_scale[1] * r)), keep_ratio=True)
         for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]])
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix=img_suffix,
               seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label)
train_dataloader = dict(
    batch_size=2,
    sampler=dict(type='DefaultSampler', shuffle=True),  # epochs instead of the recipe's iterations
    drop_last=True,  # a last batch of one image would fail in the pyramid pooling's BatchNorm
    dataset=dict(**dataset, pipeline=train_pipeline,
                 data_prefix=dict(img_path=train_img_dir, seg_map_path=train_ann_dir)))
val_dataloader = dict(
    dataset=dict(**dataset, pipeline=test_pipeline,
                 data_prefix=dict(img_path=val_img_dir, seg_map_path=val_ann_dir)))
test_dataloader = val_dataloader
# the per-class IoU/Acc table (rows named by `classes`) is printed after every validation

# The schedule in proportion to the run, whatever the data set's size: linear warm-up over the
# first 10 % of the run's iterations (LinearWarmupLR: no `end`, the Runner gives it the run; at
# least 2 iterations, at most the run, one log line when it is not 10 %) and poly decay to 0 at
# the end (by_epoch + convert_to_iter_based: counted in iterations of this data set), validation
# every epoch, the best epoch by mIoU kept.
train_cfg = dict(_delete_=True, type='ResumableEpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='LinearWarmupLR', start_factor=1e-6, share=0.1, by_epoch=False),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=True, convert_to_iter_based=True,
         begin=0, end=max_epochs),
]
default_hooks = dict(
    logger=dict(interval=10, log_metric_by_epoch=True),
    checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=1, save_best='mIoU', rule='greater'))
log_processor = dict(by_epoch=True, window_size=10)
