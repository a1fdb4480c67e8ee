# Cascade Mask R-CNN + FPN, FocalNet-S lrf with per-stage windows [11, 9, 9, 7] (3 levels), 3x.
# Not an official release: microsoft/FocalNet ships (and publishes a number for) Cascade T only.
# The recipe is Cascade T's (model, data, optimizer, schedule) with FocalNet-S and the drop_path
# the official configs use for S at 3x (Mask R-CNN S 3x: 0.5).
_base_ = './cascade_maskrcnn_focalnet_t_lrf_3x.py'

pretrained = 'focalnet://small_lrf'
model = dict(
    backbone=dict(arch='small_lrf', drop_path_rate=0.5, init_cfg=dict(checkpoint=pretrained)))
