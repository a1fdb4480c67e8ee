# Mask R-CNN FocalNet-S lrf (kernels 9/11/13), 3x. Published 49.3 box / 43.8 mask AP.
# Official: mask_rcnn_focalnet_small_patch4_mstrain_480-800_adamw_3x_coco_lrf.py
_base_ = './maskrcnn_focalnet_t_lrf_3x.py'

pretrained = 'focalnet://small_lrf'
model = dict(
    backbone=dict(
        arch='small_lrf', drop_path_rate=0.5, init_cfg=dict(checkpoint=pretrained)))
