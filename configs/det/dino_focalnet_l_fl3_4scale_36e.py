# DINO 4-scale, FocalNet-L fl3, 36 epochs, COCO.
# Published: 58.3 box AP (detrex projects/dino, DINO-Focal-Large-4scale, FocalNet-384-LRF-3Level,
#   IN22k, 36 epochs; config dino-focal/dino_focalnet_large_lrf_384_4scale_36ep.py).
# detrex: lr_multiplier_36ep = x0.1 after 30 of 36 epochs (mmdet's own 36e DINO uses [27, 33]),
# train.max_iter 270000 at batch 16; model, optimizer and data as the 12-epoch config.
_base_ = './dino_focalnet_l_fl3_4scale_12e.py'

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[30], gamma=0.1)
]
