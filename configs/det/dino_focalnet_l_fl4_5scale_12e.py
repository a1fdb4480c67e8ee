# DINO 5-scale, FocalNet-L fl4, 12 epochs, COCO.
# Published: 58.5 box AP (detrex projects/dino, DINO-Focal-Large-5scale, FocalNet-384-LRF-4Level,
#   IN22k, 12 epochs; config dino-focal/dino_focalnet_large_lrf_384_fl4_5scale_12ep.py).
# FocalNet-DINO trains this model with config/DINO/DINO_5scale_focalnet_large_fl4.py
# (return_interm_indices [0, 1, 2, 3], num_feature_levels 5, use_checkpoint True).
# Diff on the fl4 4-scale config (detrex's diff on its 4-scale config): all four stages out,
# neck p0..p3 = 192/384/768/1536 with num_outs 5, transformer num_feature_levels 5 (mmdet: the
# detector, the encoder self-attention and the decoder cross-attention each take the levels).
_base_ = './dino_focalnet_l_fl4_4scale_12e.py'

num_levels = 5
model = dict(
    num_feature_levels=num_levels,
    backbone=dict(out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[192, 384, 768, 1536], num_outs=num_levels),
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels))))
