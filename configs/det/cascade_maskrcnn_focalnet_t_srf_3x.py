# Cascade Mask R-CNN FocalNet-T srf (2 levels, windows [11, 9, 9, 7]), 3x. No published result.
# Official: cascade_mask_rcnn_focalnet_tiny_patch4_mstrain_480-800_adamw_3x_coco_srf.py
_base_ = './cascade_maskrcnn_focalnet_t_lrf_3x.py'

pretrained = 'focalnet://tiny_srf'
model = dict(
    backbone=dict(
        arch='tiny_srf', focal_levels=[2, 2, 2, 2], init_cfg=dict(checkpoint=pretrained)))
