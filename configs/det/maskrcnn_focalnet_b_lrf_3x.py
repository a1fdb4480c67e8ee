# Mask R-CNN FocalNet-B lrf (kernels 9/11/13), 3x. Published 49.8 box / 44.1 mask AP.
# Official: mask_rcnn_focalnet_base_patch4_mstrain_480-800_adamw_3x_coco_lrf.py
_base_ = './maskrcnn_focalnet_s_lrf_3x.py'

pretrained = 'focalnet://base_lrf'
model = dict(
    backbone=dict(arch='base_lrf', init_cfg=dict(checkpoint=pretrained)),  # drop_path 0.5 as S
    neck=dict(in_channels=[128, 256, 512, 1024]))
