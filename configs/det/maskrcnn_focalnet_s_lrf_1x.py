# Mask R-CNN FocalNet-S lrf (kernels 9/11/13), 1x. Published 48.3 box / 43.1 mask AP.
# Official: mask_rcnn_focalnet_small_patch4_mstrain_480-800_adamw_1x_coco_lrf.py
_base_ = './maskrcnn_focalnet_t_lrf_1x.py'

pretrained = 'focalnet://small_lrf'
model = dict(
    backbone=dict(
        arch='small_lrf', drop_path_rate=0.2, init_cfg=dict(checkpoint=pretrained)))
