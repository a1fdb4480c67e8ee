# Mask R-CNN FocalNet-T srf (2 focal levels, kernels 9/11), 3x. Published 47.6 box / 42.6 mask AP.
# Official: mask_rcnn_focalnet_tiny_patch4_mstrain_480-800_adamw_3x_coco_srf.py
_base_ = './maskrcnn_focalnet_t_lrf_3x.py'

pretrained = 'focalnet://tiny_srf'
model = dict(
    backbone=dict(
        arch='tiny_srf', focal_levels=[2, 2, 2, 2], init_cfg=dict(checkpoint=pretrained)))
