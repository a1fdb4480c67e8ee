# Sparse R-CNN FocalNet-T srf (2 levels, windows [11, 9, 9, 7]), 3x. No published result.
# Official: sparse_rcnn_focalnet_tiny_fpn_300_proposals_crop_mstrain_480-800_3x_coco_srf.py
_base_ = './sparsercnn_focalnet_t_lrf_3x.py'

pretrained = 'focalnet://tiny_srf'
model = dict(
    backbone=dict(
        arch='tiny_srf', focal_levels=[2, 2, 2, 2], init_cfg=dict(checkpoint=pretrained)))
