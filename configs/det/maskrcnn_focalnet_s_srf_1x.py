# Mask R-CNN FocalNet-S srf (kernels 9/11), 1x. Published 48.0 box / 42.7 mask AP.
# Official: mask_rcnn_focalnet_small_patch4_mstrain_480-800_adamw_1x_coco_srf.py
_base_ = './maskrcnn_focalnet_s_lrf_1x.py'

pretrained = 'focalnet://small_srf'
model = dict(
    backbone=dict(
        arch='small_srf', focal_levels=[2, 2, 2, 2], init_cfg=dict(checkpoint=pretrained)))
