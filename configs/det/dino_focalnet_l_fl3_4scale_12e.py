# DINO 4-scale, FocalNet-L fl3 (ImageNet-22k 384, 3 focal levels, kernels 5/7/9), 12 epochs, COCO.
# Published: 57.5 box AP (detrex projects/dino, DINO-FocalNet-Large-4scale, FocalNet-384-LRF-3Level,
#   IN22k, 12 epochs, 100 denoising queries; config dino_focalnet_large_lrf_384_4scale_12ep.py).
# Backbone flags as FocalNet-DINO's build_focalnet('focalnet_L_384_22k') (microsoft/FocalNet-DINO
#   models/dino/focal.py) and detrex's models/dino_focalnet.py.
#
# Naming scheme of the DINO configs in configs/det:
#   dino_focalnet_<l|xl|h>_<fl3|fl4>_<4scale|5scale>_<12e|36e>[_<variant>].py
#   fl3/fl4 = the focal levels of the ImageNet-22k weights (focalnet://<size>_fl3|fl4);
#   4scale = backbone stages 1-3 + one extra level, 5scale = stages 0-3 + one extra level.
# Inheritance: this file is the root of the DINO family; each other file is a small diff.
#
# Recipe, field by field (detrex config -> here; mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py
# already carries everything not listed):
#   model.backbone: embed 192, depths 2-2-18-2, levels 3, windows 5, use_conv_embed, use_postln,
#     use_layerscale, no postln_in_modulation, no normalize_modulator  -> arch='large_fl3'
#     out_indices (1, 2, 3); drop_path_rate 0.2 (detrex FocalNet default; FocalNet-DINO's is 0.3)
#   model.neck input_shapes p1..p3 = 384/768/1536 -> ChannelMapper in_channels, num_outs 4,
#     conv bias on (DINO's and detrex's input_proj convs have a bias; mmdet's 'auto' drops it)
#   model.transformer.num_feature_levels 4 -> num_feature_levels and the attention num_levels
#   optimizer AdamW lr 1e-4, betas (0.9, 0.999), weight_decay 1e-4          (= mmdet base)
#   lr_factor_func 0.1 for 'backbone'                        -> custom_keys backbone lr_mult 0.1
#   weight_decay_norm 0.0 (detrex common/optim.py)            -> norm_decay_mult 0 (see below)
#   clip_grad max_norm 0.1, norm_type 2                                        (= mmdet base)
#   lr_multiplier_12ep: x0.1 after 11 of 12 epochs             -> MultiStepLR milestones [11]
#   total_batch_size 16                                    -> 8 GPUs x 2 images (= mmdet base)
#   dataloader coco_detr (flip, multi-scale 480-800 / resize-crop-resize)      (= mmdet base)
# Left at mmdet's DINO values (equal to detrex's): 900 queries, 100 dn queries, label noise 0.5,
# box noise 1.0 (FocalNet-DINO's own config: 0.4), position temperature 20, offset 0.
_base_ = ['mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py', '../_base_/safe_training.py']

# the run's safety, as configs/_base_/safe_training.py says (which also imports focalnet_mm)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
env_cfg = dict(dist_cfg=dict(timeout=900))

# ImageNet-22k FocalNet-L fl3 at 384 (focalnet_large_lrf_384.pth, GitHub release v1.0.0 of
# microsoft/FocalNet); the short name resolves to that file.
pretrained = 'focalnet://large_fl3'
model = dict(
    backbone=dict(
        _delete_=True,
        type='FocalNet',
        arch='large_fl3',
        focal_levels=[3, 3, 3, 3],
        focal_windows=[5, 5, 5, 5],  # DINO keeps the ImageNet kernels (no 9/11/13 padding)
        drop_path_rate=0.2,
        out_indices=(1, 2, 3),
        # Activation checkpointing of every block, as FocalNet-DINO (use_checkpoint=True) and
        # mmdet's Swin-L DINO: same gradients, ~1/3 slower, see docs/dino.md for the memory.
        # A per-stage tuple, e.g. (False, False, True, False), checkpoints the 18-block stage only.
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[384, 768, 1536], bias=True))

# detrex: AdamW over get_default_optimizer_params(weight_decay_norm=0.0) with backbone lr x0.1.
# mmengine applies norm_decay_mult only to parameters that no custom key matched, and 'backbone'
# matches every backbone parameter; the backbone's LayerNorms therefore get keys of their own
# (longer keys are matched first; none of them names a parameter outside the backbone).
_backbone_norm = dict(lr_mult=0.1, decay_mult=0.0)
optim_wrapper = dict(
    type='FiniteOptimWrapper',
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'patch_embed.norm': _backbone_norm,
            'downsample.norm': _backbone_norm,
            'modulation.ln': _backbone_norm,  # use_postln_in_modulation (huge)
            **{f'norm{i}.{p}': _backbone_norm for i in range(4) for p in ('weight', 'bias')},
        }))
