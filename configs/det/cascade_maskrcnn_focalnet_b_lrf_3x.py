# Cascade Mask R-CNN + FPN, FocalNet-B lrf with per-stage windows [11, 9, 9, 7] (3 levels), 3x.
# Not an official release (see cascade_maskrcnn_focalnet_s_lrf_3x.py): Cascade T's recipe with
# FocalNet-B and the official B 3x drop_path 0.5 (Mask R-CNN B 3x).
_base_ = './cascade_maskrcnn_focalnet_s_lrf_3x.py'

pretrained = 'focalnet://base_lrf'
model = dict(
    backbone=dict(arch='base_lrf', init_cfg=dict(checkpoint=pretrained)),  # drop_path 0.5 as S
    neck=dict(in_channels=[128, 256, 512, 1024]))
