# Mask R-CNN FocalNet-S srf (kernels 9/11), 3x. Published 48.9 box / 43.6 mask AP.
# Official: mask_rcnn_focalnet_small_patch4_mstrain_480-800_adamw_3x_coco_srf.py
_base_ = './maskrcnn_focalnet_s_lrf_3x.py'

pretrained = 'focalnet://small_srf'
model = dict(
    backbone=dict(
        arch='small_srf', focal_levels=[2, 2, 2, 2], init_cfg=dict(checkpoint=pretrained)))
