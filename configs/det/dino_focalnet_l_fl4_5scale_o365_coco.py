# DINO 5-scale, FocalNet-L fl4, pre-trained on Objects365 and fine-tuned on COCO: evaluation config
# for the released FocalNet-DINO checkpoint.
# Published: 63.5 box AP on COCO minival without test-time augmentation (microsoft/FocalNet-DINO
#   README; weights: https://huggingface.co/microsoft/focalnet-large-fl4-dino-o365-cocoft,
#   file focalnet_large_fl4_o365_finetuned_on_coco.pth, see FocalNet-DINO issues #45/#46).
# The file is in the IDEA-Research DINO layout; convert it, then evaluate (docs/dino.md):
#   python tools/model_converters/focalnet_dino2mm.py focalnet_large_fl4_o365_finetuned_on_coco.pth \
#       dino_focalnet_l_fl4_o365_coco.pth --config configs/det/dino_focalnet_l_fl4_5scale_o365_coco.py
#   python tools/test.py configs/det/dino_focalnet_l_fl4_5scale_o365_coco.py dino_focalnet_l_fl4_o365_coco-<hash>.pth
# Evaluation settings of detrex's dino_focalnet_large_fl4_o365_finetuned_on_coco.py (the config
# that evaluates this file in detrex): short side 1200, long side <= 1999, top-600 boxes per image;
# position embedding temperature 20 / offset 0 as mmdet's DINO already has.
# No training recipe for the Objects365 stage was published: train_* fields are the 12e config's.
_base_ = './dino_focalnet_l_fl4_5scale_12e.py'

model = dict(
    backbone=dict(init_cfg=None),  # every weight comes from the converted detector checkpoint
    test_cfg=dict(max_per_img=600))
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(1999, 1200), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
