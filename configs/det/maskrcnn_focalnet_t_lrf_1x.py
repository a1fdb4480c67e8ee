# Mask R-CNN FocalNet-T lrf (kernels 9/11/13), 1x. Published 46.1 box / 41.5 mask AP.
# Official: mask_rcnn_focalnet_tiny_patch4_mstrain_480-800_adamw_1x_coco_lrf.py
# Root of the 1x family. The official 1x keeps the 3x augmentation (multi-scale + crop); only the
# length (12 epochs, LR steps at 9 and 11, not mmdet's usual 8/11) and drop_path change.
_base_ = './maskrcnn_focalnet_t_lrf_3x.py'

model = dict(backbone=dict(drop_path_rate=0.1))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[9, 11],
         gamma=0.1)
]
