# Mask2Former + FocalNet-L (ImageNet-22k 384, 3 focal levels, kernels 5/7/9), ADE20K 640x640, 160k
# iterations, batch 16.
# Target: 58.5 mIoU (FocalNet paper, arXiv 2203.11926 abstract and NeurIPS 2022: "using large
#   FocalNet and Mask2former, we achieve 58.5 mIoU for ADE20K semantic segmentation"; the paper
#   compares with Swin-L + Mask2Former, 57.7 mIoU multi-scale in the Mask2Former paper, so 58.5 is
#   read as multi-scale + flip: tools/test.py --tta). NOT REPRODUCED here: no training run, no
#   released checkpoint (the official repository has no Mask2Former code, config or weights).
#
# Diff on mmseg's Swin-L recipe (mmseg::mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_
# ade20k-640x640.py, = Mask2Former's maskformer2_swin_large_IN21k_384_bs16_160k_res640); only the
# backbone and its optimizer keys change. Field by field:
#   backbone        FocalNet-L 'large_fl3', stage widths 192/384/768/1536 = Swin-L's (head
#                   in_channels unchanged). Focal level 3, ImageNet kernels 5/7/9, drop path 0.3
#                   (the Swin-L recipe's; the paper gives none): the reasons are in the COCO panoptic
#                   config's header (configs/det/mask2former_focalnet_l_fl3_lsj_100e_coco_panoptic.py).
#   weights         focalnet://large_fl3 (focalnet_large_lrf_384.pth, microsoft/FocalNet v1.0.0)
#   head            100 queries, pixel decoder, 9-layer decoder, losses           (= Swin-L base)
#   optimizer       AdamW lr 1e-4, wd 0.05, eps 1e-8, clip 0.01                   (= Swin-L base)
#   backbone lr     x0.1                                                          (= Swin-L base)
#   decay 0         FocalNet LayerNorms and layer-scale gammas (lr x0.1); query_embed, query_feat,
#                   level_embed; every other norm; no position tables to map (focal kernels keep
#                   their decay) — the same mapping as the COCO config, whose header argues it
#   schedule        poly (power 0.9) over 160k iterations                          (= Swin-L base)
#   batch           16 = 8 GPUs x 2                                                (= Swin-L base)
#   data            short side 320-1280, crop 640 (cat_max_ratio 0.75), flip, photometric;
#                   test at (2560, 640); --tta: mmseg's multi-scale + flip        (= Swin-L base)
# Memory (docs/segmentation.md): 2 crops of 640x640 per GPU fit 24 GB without with_cp.
_base_ = [
    'mmseg::mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py',
    '../_base_/focalnet_l_fl3_mask2former.py',
    '../_base_/safe_training.py',
]

# the run's safety, as configs/_base_/safe_training.py says (which also imports focalnet_mm)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
env_cfg = dict(dist_cfg=dict(timeout=900))

model = dict(backbone={{_base_.focalnet_l_fl3_backbone}})
optim_wrapper = dict(type='FiniteOptimWrapper', paramwise_cfg={{_base_.focalnet_l_paramwise_cfg}})
