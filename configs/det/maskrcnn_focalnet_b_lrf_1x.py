# Mask R-CNN FocalNet-B lrf (kernels 9/11/13), 1x. Published 49.0 box / 43.5 mask AP.
# Official: mask_rcnn_focalnet_base_patch4_mstrain_480-800_adamw_1x_coco_lrf.py
_base_ = './maskrcnn_focalnet_s_lrf_1x.py'

pretrained = 'focalnet://base_lrf'
model = dict(
    backbone=dict(
        arch='base_lrf', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
