"""FocalModulationVisHook in a short real mmengine training (tiny FocalNet, coco_mini images)."""
import glob
import os
import os.path as osp

import mmcv
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.runner import Runner

import focalnet_mm.visualization  # noqa: F401  (registers the hook)


def tiny_classification_data(coco_mini, root):
    """4 real images, 64x48, in two class folders (mmpretrain CustomDataset layout)."""
    names = sorted(os.listdir(osp.join(coco_mini, 'images')))[:4]
    for index, name in enumerate(names):
        image = mmcv.imresize(mmcv.imread(osp.join(coco_mini, 'images', name)), (64, 48))
        os.makedirs(osp.join(root, 'ab'[index % 2]), exist_ok=True)
        mmcv.imwrite(image, osp.join(root, 'ab'[index % 2], name))
    return sorted(glob.glob(osp.join(root, '*', '*.jpg')))


def training_config(data_root, work_dir, by_epoch):
    loop = dict(by_epoch=True, max_epochs=2) if by_epoch else dict(by_epoch=False, max_iters=4)
    return Config(dict(
        default_scope='mmpretrain',
        work_dir=work_dir,
        model=dict(
            type='ImageClassifier',
            data_preprocessor=dict(num_classes=2, mean=[123.675, 116.28, 103.53],
                                   std=[58.395, 57.12, 57.375], to_rgb=True),
            backbone=dict(type='FocalNet', arch='tiny_srf', embed_dim=16, depths=[1, 1, 2, 1],
                          out_indices=(3,), drop_path_rate=0.),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=2, in_channels=128,
                      loss=dict(type='CrossEntropyLoss'))),
        train_dataloader=dict(
            batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(type='CustomDataset', data_root=data_root, pipeline=[
                dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 48)),
                dict(type='PackInputs')])),
        train_cfg=loop,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=100)),
        # epochs: 2 images, drawn at the start too; iterations: 1 image, only every 2 iterations
        custom_hooks=[dict(type='FocalModulationVisHook', interval=1 if by_epoch else 2,
                           stage=2, num_images=2 if by_epoch else 1, short_side=48,
                           draw_before_train=by_epoch)],
        visualizer=dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')]),
        log_level='WARNING'))


@pytest.mark.slow
@pytest.mark.parametrize('by_epoch', [True, False], ids=['epochs', 'iterations'])
def test_hook_writes_figures_during_training(coco_mini, tmp_path, by_epoch):
    images = tiny_classification_data(coco_mini, str(tmp_path / 'data'))
    work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(training_config(str(tmp_path / 'data'), work_dir, by_epoch))
    runner.train()
    assert runner.model.training and runner.model.backbone.training  # train mode restored

    unit, steps, count = ('epoch', [0, 1, 2], 2) if by_epoch else ('iter', [2, 4], 1)
    # no val loop: the first images of the training dataset; a contact sheet for several
    stems = [osp.splitext(osp.basename(p))[0] for p in images[:count]]
    expected = {f'{stem}_{unit}{s}.png' for stem in stems for s in steps}
    if count > 1:
        expected |= {f'contact_sheet_{unit}{s}.png' for s in steps}
    assert set(os.listdir(osp.join(work_dir, 'modulation'))) == expected

    first = mmcv.imread(osp.join(work_dir, 'modulation', f'{stems[0]}_{unit}{steps[0]}.png'))
    last = mmcv.imread(osp.join(work_dir, 'modulation', f'{stems[0]}_{unit}{steps[-1]}.png'))
    assert first.shape == last.shape and first.std() > 30
    # below the heading band: the maps changed with the weights
    assert np.abs(first[60:].astype(float) - last[60:].astype(float)).mean() > 0.5

    # the same figures went to the visualizer backends, flat names, one per drawing step
    sent = glob.glob(osp.join(work_dir, '*', 'vis_data', 'vis_image', 'modulation_*.png'))
    assert len(sent) == count * len(steps)
    assert mmcv.imread(sent[0]).shape == first.shape
