# FocalNet-H (3 focal levels, window 3; conv stem, post-norm, layerscale, LayerNorm inside the
# modulation), ImageNet-22k (21842 classes) at 224x224: the released focalnet_huge_lrf_224.pth with
# its head. The base of every 22k config here; evaluation as the 1k configs (short side 256
# bicubic, centre crop 224, ImageNet mean/std).
#   python tools/test.py configs/cls/focalnet_h_fl3_in22k.py focalnet_huge_lrf_224.pth
# Data: data/imagenet21k/{train,val}/ with meta/{train,val}.txt ("<path> <label>" lines, labels in
# the order of the official labelmap_22k_reorder.txt). The official repository publishes no
# 22k training recipe: the training settings inherited from the 1k recipe are a starting point
# (these files are mostly evaluated, or used as init_cfg for fine-tuning / detection).
_base_ = './focalnet_t_srf_in1k.py'

num_classes = 21842

# Released weights: focalnet://huge_fl3; sources: focalnet_mm/weights/sources.py
model = dict(
    backbone=dict(arch='huge_fl3', drop_path_rate=0.5),  # drop_path as configs/focalnet_huge_fl3.yaml
    head=dict(num_classes=num_classes, in_channels=2816))
data_preprocessor = dict(num_classes=num_classes)

train_dataloader = dict(dataset=dict(type='ImageNet21k', data_root='data/imagenet21k', split='train'))
val_dataloader = dict(
    dataset=dict(type='ImageNet21k', data_root='data/imagenet21k', split='', data_prefix='val',
                 ann_file='meta/val.txt'))
test_dataloader = val_dataloader
