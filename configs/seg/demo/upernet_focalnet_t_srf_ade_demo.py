# Segmentation demo: UPerNet + FocalNet-T (srf) on the synthetic ADE20K-layout data set that
# tools/data/make_demo_ade.py writes; minutes on a CPU, prints mIoU at the end.
#   python tools/data/make_demo_ade.py
#   python tools/train.py configs/seg/demo/upernet_focalnet_t_srf_ade_demo.py
#   python tools/test.py configs/seg/demo/upernet_focalnet_t_srf_ade_demo.py \
#       work_dirs/upernet_focalnet_t_srf_ade_demo/iter_200.pth
# What differs from upernet_focalnet_t_srf_512x512_160k_ade20k.py, and why:
# - no ImageNet weights (init_cfg=None): the demo runs offline; simple scenes allow training
#   from scratch;
# - heads with BN instead of SyncBN (one process) and 128/64 channels instead of 512/256: the
#   512-channel UPerHead costs 4x the CPU time of the whole rest at this size (the backbone is
#   the ADE20K config's FocalNet-T srf, kernels 9/11, unchanged);
# - 128x128 crops of ~160x128 images, batch 4, 200 iterations with a higher LR and short warm-up.
_base_ = '../upernet_focalnet_t_srf_512x512_160k_ade20k.py'

data_root = 'data/ade_demo/ADEChallengeData2016'
# named by tools/train.py and tools/test.py when the data is missing
dataset_layout_hint = ('the synthetic demo data; write it with python tools/data/make_demo_ade.py '
                       '(-> data/ade_demo/ADEChallengeData2016/)')
crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=None),
    decode_head=dict(channels=128, norm_cfg=norm_cfg),
    auxiliary_head=dict(channels=64, norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(320, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=2,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=2, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
# multi-scale + flip test (tools/test.py --tta) around the demo's 128-pixel test scale
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (0.75, 1.0, 1.25)],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]])
]

max_iters = 200
optim_wrapper = dict(optimizer=dict(lr=3e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
