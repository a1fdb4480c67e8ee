# Mask R-CNN FocalNet-B srf (kernels 9/11), 3x. Published 49.6 box / 44.1 mask AP.
# Official: mask_rcnn_focalnet_base_patch4_mstrain_480-800_adamw_3x_coco_srf.py
_base_ = './maskrcnn_focalnet_b_lrf_3x.py'

pretrained = 'focalnet://base_srf'
model = dict(
    backbone=dict(
        arch='base_srf', focal_levels=[2, 2, 2, 2], init_cfg=dict(checkpoint=pretrained)))
