# DINO 5-scale, FocalNet-L fl4, 36 epochs, COCO.
# Published: none. detrex ships the recipe (dino-focal/dino_focalnet_large_lrf_384_fl4_5scale_36ep.py)
#   but its model-zoo row links this config with the 12-epoch number (58.5) and the 12-epoch file.
# detrex's diff on the 12-epoch config: lr_multiplier_36ep (x0.1 after 30 of 36 epochs),
# train.max_iter 270000, drop_path_rate 0.4 ("larger drop-path rate for longer training").
_base_ = './dino_focalnet_l_fl4_5scale_12e.py'

model = dict(backbone=dict(drop_path_rate=0.4))
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[30], gamma=0.1)
]
