# Fine-tune FocalNet-T (srf) from the released ImageNet-1k weights on an ImageNet-layout data set:
# the backbone starts from the official file (init_cfg Pretrained; the file's final `norm` is
# loaded as norm3), the head is new. Everything else is the official recipe of
# focalnet_t_srf_in1k.py: AdamW 1e-3 @ batch 1024 (--auto-scale-lr rescales it to your batch),
# wd 0.05 without decay on 1-D parameters, linear warm-up + cosine, Mixup 0.8 / CutMix 1.0,
# label smoothing 0.1, RandAugment, random erasing, drop_path 0.2, grad clip 5.
# Data layout (python tools/data/make_demo_imagenet.py data/demo_imagenet writes a small one):
#   <data_root>/train/<class>/*.JPEG and <data_root>/val/<class>/*.JPEG; classes = sorted folders.
# Fine-tuning usually wants a shorter schedule and a lower LR, e.g. 37 classes, 30 epochs:
#   python tools/train.py configs/cls/focalnet_t_srf_in1k_finetune.py --auto-scale-lr --cfg-options \
#     train_dataloader.dataset.data_root=data/pets val_dataloader.dataset.data_root=data/pets \
#     test_dataloader.dataset.data_root=data/pets model.head.num_classes=37 \
#     data_preprocessor.num_classes=37 train_cfg.max_epochs=30 param_scheduler.0.end=5 \
#     param_scheduler.1.begin=5 optim_wrapper.optimizer.lr=1e-4
# (or write those values into a copy of this file).
_base_ = './focalnet_t_srf_in1k.py'

pretrained = 'focalnet://tiny_srf'
num_classes = 1000

model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)

# folder-per-class data (classes from the folder names) instead of ImageNet's fixed 1000 names
train_dataloader = dict(
    dataset=dict(_delete_=True, type='CustomDataset', data_root='data/imagenet',
                 data_prefix='train', pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    dataset=dict(_delete_=True, type='CustomDataset', data_root='data/imagenet',
                 data_prefix='val', pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
