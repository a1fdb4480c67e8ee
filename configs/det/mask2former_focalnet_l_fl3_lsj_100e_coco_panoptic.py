# Mask2Former + FocalNet-L (ImageNet-22k 384, 3 focal levels, kernels 5/7/9), COCO panoptic,
# large-scale jitter 1024x1024, 100 epochs (737.5k iterations at batch 16).
# Target: 57.9 PQ (FocalNet paper, arXiv 2203.11926 abstract and NeurIPS 2022: "using large FocalNet
#   and Mask2former ... 57.9 PQ for COCO Panoptic Segmentation"; Swin-L + Mask2Former: 57.8 PQ).
#   NOT REPRODUCED here: no training run, no released checkpoint (the official repository has no
#   Mask2Former code, config or weights).
#
# Diff on mmdet's Swin-L recipe (mmdet::mask2former/mask2former_swin-l-p4-w12-384-in21k_16xb1-lsj-
# 100e_coco-panoptic.py, = Mask2Former's maskformer2_swin_large_IN21k_384_bs16_100ep); only the
# backbone and its optimizer keys change. Field by field:
#   backbone        FocalNet-L 'large_fl3' (embed 192, depths 2-2-18-2, conv embed, post-LN, layer
#                   scale): same stage widths as Swin-L, so the head's in_channels stay
#                   [192, 384, 768, 1536]. Focal level: neither the paper nor the official README
#                   names it for these runs (an assumption): 3, because the NeurIPS 2022 version
#                   already reports 57.9 PQ / 58.5 mIoU before any DINO result, and the 4-level
#                   files were released (2022-11, beside fl3) as the weights of the DINO results.
#                   focalnet://large_fl4 with arch='large_fl4', focal_levels=[4]*4,
#                   focal_windows=[3]*4 is the other choice (docs/segmentation.md).
#   kernels         ImageNet kernels kept (windows 5 -> 5/7/9), as FocalNet-DINO runs FocalNet-L;
#                   the UPerNet recipe's window 9 is for the ImageNet-1k T/S/B models.
#   drop path       0.3: the paper gives none for Mask2Former; the Swin-L recipe's value.
#   weights         focalnet://large_fl3 (focalnet_large_lrf_384.pth, microsoft/FocalNet release
#                   v1.0.0), loaded by the backbone's init_cfg.
#   queries         200; pixel decoder, 9-layer masked-attention decoder, losses   (= Swin-L base)
#   optimizer       AdamW lr 1e-4, wd 0.05, eps 1e-8, clip 0.01                   (= Swin-L base)
#   backbone lr     x0.1 for every backbone parameter                              (= Swin-L base)
#   decay 0         Swin-L: its LayerNorms, absolute_pos_embed, relative_position_bias_table
#                   (lr x0.1); query_embed, query_feat, level_embed (lr x1); every other norm
#                   (norm_decay_mult 0). FocalNet, field by field: LayerNorms (stem, norm1/norm2 of
#                   each block, downsample, norm0-3) -> decay 0, lr x0.1; layer-scale gamma_1/gamma_2
#                   -> decay 0, lr x0.1 (per-channel scales of the residual branches, the role of a
#                   norm's weight; FocalNet's ImageNet training exempts every 1-d parameter);
#                   position tables -> none: FocalNet has no position embedding or bias table. What
#                   Swin's relative bias does (a learned spatial pattern) is done by the depthwise
#                   focal kernels, ordinary conv weights that every FocalNet recipe decays; they keep
#                   decay 0.05. Head keys unchanged.
#   schedule        737.5k iterations, x0.1 at 655.6k and 710.2k                  (= Swin-L base)
#   batch           16 = 8 GPUs x 2 (the base runs 16 GPUs x 1: the same total batch)
#   data / eval     LSJ 0.1-2.0, crop 1024, flip; PQ + box/mask AP                 (= Swin-L base)
# Memory per GPU at 2 images of 1024x1024 (estimated, docs/segmentation.md): ~31 GiB as is (a 40 GB
#   GPU, like mmdet's Swin-L config: no checkpointing); ~20 GiB with the 18-block stage checkpointed,
#   --cfg-options "model.backbone.with_cp=(False,False,True,False)" (32 GB, 24 GB tight); --amp
#   (fp16) takes either down further (24 GB GPUs).
_base_ = [
    'mmdet::mask2former/mask2former_swin-l-p4-w12-384-in21k_16xb1-lsj-100e_coco-panoptic.py',
    '../_base_/focalnet_l_fl3_mask2former.py',
    '../_base_/safe_training.py',
]

# the run's safety, as configs/_base_/safe_training.py says (which also imports focalnet_mm)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
env_cfg = dict(dist_cfg=dict(timeout=900))

model = dict(backbone={{_base_.focalnet_l_fl3_backbone}})
train_dataloader = dict(batch_size=2, num_workers=2)
optim_wrapper = dict(type='FiniteOptimWrapper', paramwise_cfg={{_base_.focalnet_l_paramwise_cfg}})
