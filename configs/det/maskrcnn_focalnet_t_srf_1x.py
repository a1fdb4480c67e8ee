# Mask R-CNN FocalNet-T srf (kernels 9/11), 1x. Published 45.9 box / 41.3 mask AP.
# Official: mask_rcnn_focalnet_tiny_patch4_mstrain_480-800_adamw_1x_coco_srf.py
_base_ = './maskrcnn_focalnet_t_lrf_1x.py'

pretrained = 'focalnet://tiny_srf'
model = dict(
    backbone=dict(
        arch='tiny_srf', focal_levels=[2, 2, 2, 2], init_cfg=dict(checkpoint=pretrained)))
