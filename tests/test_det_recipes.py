"""Each detection config carries the official FocalNet training recipe, field for field.

OFFICIAL below is written from the official mmdet 2.x configs in microsoft/FocalNet
(detection/configs/focalnet/<file> and detection/configs/_base_/models/*_focalnet_fpn.py; their
schedule base is mmdet 2.x configs/_base_/schedules/schedule_1x.py: linear warm-up 500 iterations
from 0.001). The official Mask R-CNN configs say samples_per_gpu=1 but the official training
commands (detection/README.md) pass data.samples_per_gpu=2 on 8 GPUs: 16 images per iteration.
Config loading only (no model is built), plus a simulation of the LR schedule.
"""
import os.path as osp

import mmdet
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import PARAM_SCHEDULERS

from conftest import REPO_ROOT, parsed_config

MMDET_CONFIGS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')

ADAMW_DET = dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05)
# the official Sparse R-CNN optimizer leaves betas at the AdamW default
ADAMW_SPARSE = dict(type='AdamW', lr=2.5e-5, betas=(0.9, 0.999), weight_decay=1e-4)


def recipe(file, levels, windows, drop_path, epochs, steps, optimizer=ADAMW_DET, norm_decay=0.,
           grad_clip=None, with_mask=True):
    return dict(file=file, focal_levels=[levels] * 4, focal_windows=windows,
                drop_path_rate=drop_path, max_epochs=epochs, milestones=steps,
                optimizer=optimizer, norm_decay_mult=norm_decay, grad_clip=grad_clip,
                with_mask=with_mask, batch_per_gpu=2, gpus=8, base_batch_size=16,
                warmup_iters=500, warmup_ratio=0.001)


W9, W_OTHER = [9, 9, 9, 9], [11, 9, 9, 7]
M = 'mask_rcnn_focalnet_{}_patch4_mstrain_480-800_adamw_{}_coco_{}.py'
OFFICIAL = {
    'maskrcnn_focalnet_t_srf_1x': recipe(M.format('tiny', '1x', 'srf'), 2, W9, 0.1, 12, [9, 11]),
    'maskrcnn_focalnet_t_lrf_1x': recipe(M.format('tiny', '1x', 'lrf'), 3, W9, 0.1, 12, [9, 11]),
    'maskrcnn_focalnet_t_srf_3x': recipe(M.format('tiny', '3x', 'srf'), 2, W9, 0.3, 36, [27, 33]),
    'maskrcnn_focalnet_t_lrf_3x': recipe(M.format('tiny', '3x', 'lrf'), 3, W9, 0.3, 36, [27, 33]),
    'maskrcnn_focalnet_s_srf_1x': recipe(M.format('small', '1x', 'srf'), 2, W9, 0.2, 12, [9, 11]),
    'maskrcnn_focalnet_s_lrf_1x': recipe(M.format('small', '1x', 'lrf'), 3, W9, 0.2, 12, [9, 11]),
    'maskrcnn_focalnet_s_srf_3x': recipe(M.format('small', '3x', 'srf'), 2, W9, 0.5, 36, [27, 33]),
    'maskrcnn_focalnet_s_lrf_3x': recipe(M.format('small', '3x', 'lrf'), 3, W9, 0.5, 36, [27, 33]),
    'maskrcnn_focalnet_b_srf_1x': recipe(M.format('base', '1x', 'srf'), 2, W9, 0.3, 12, [9, 11]),
    'maskrcnn_focalnet_b_lrf_1x': recipe(M.format('base', '1x', 'lrf'), 3, W9, 0.3, 12, [9, 11]),
    'maskrcnn_focalnet_b_srf_3x': recipe(M.format('base', '3x', 'srf'), 2, W9, 0.5, 36, [27, 33]),
    'maskrcnn_focalnet_b_lrf_3x': recipe(M.format('base', '3x', 'lrf'), 3, W9, 0.5, 36, [27, 33]),
    'cascade_maskrcnn_focalnet_t_srf_3x': recipe(
        'cascade_mask_rcnn_focalnet_tiny_patch4_mstrain_480-800_adamw_3x_coco_srf.py', 2,
        W_OTHER, 0.3, 36, [27, 33]),
    'cascade_maskrcnn_focalnet_t_lrf_3x': recipe(
        'cascade_mask_rcnn_focalnet_tiny_patch4_mstrain_480-800_adamw_3x_coco_lrf.py', 3,
        W_OTHER, 0.3, 36, [27, 33]),
    'atss_focalnet_t_srf_3x': recipe('atss_focalnet_tiny_patch4_fpn_3x_coco_srf.py', 2, W_OTHER,
                                     0.3, 36, [27, 33], with_mask=False),
    'atss_focalnet_t_lrf_3x': recipe('atss_focalnet_tiny_patch4_fpn_3x_coco_lrf.py', 3, W_OTHER,
                                     0.3, 36, [27, 33], with_mask=False),
    # no paramwise_cfg in the official Sparse R-CNN base: norms decay like everything else
    'sparsercnn_focalnet_t_srf_3x': recipe(
        'sparse_rcnn_focalnet_tiny_fpn_300_proposals_crop_mstrain_480-800_3x_coco_srf.py', 2,
        W_OTHER, 0.3, 36, [27, 33], optimizer=ADAMW_SPARSE, norm_decay=None,
        grad_clip=dict(max_norm=1, norm_type=2), with_mask=False),
    'sparsercnn_focalnet_t_lrf_3x': recipe(
        'sparse_rcnn_focalnet_tiny_fpn_300_proposals_crop_mstrain_480-800_3x_coco_lrf.py', 3,
        W_OTHER, 0.3, 36, [27, 33], optimizer=ADAMW_SPARSE, norm_decay=None,
        grad_clip=dict(max_norm=1, norm_type=2), with_mask=False),
}
# Not official releases (microsoft/FocalNet has Cascade T only): Cascade T's recipe with the
# official 3x drop_path of the size (Mask R-CNN S/B 3x: 0.5). Checked like the official ones so
# the stated recipe is what the configs hold.
EXTRAPOLATED = {
    f'cascade_maskrcnn_focalnet_{size}_lrf_3x': recipe(None, 3, W_OTHER, 0.5, 36, [27, 33])
    for size in 'sb'
}
RECIPES = {**OFFICIAL, **EXTRAPOLATED}
# Every official train pipeline: RandomFlip(0.5), then AutoAugment of two policies
MULTI_SCALES = [(s, 1333) for s in range(480, 801, 32)]  # short side 480..800 step 32
CROP_SCALES = [(400, 1333), (500, 1333), (600, 1333)]
CROP_SIZE = (384, 600)


def load(name):
    return parsed_config(osp.join(REPO_ROOT, 'configs', 'det', f'{name}.py'))


def by_type(transforms, type_):
    found = [t for t in transforms if t['type'] == type_]
    assert len(found) == 1, f'expected one {type_} in {[t["type"] for t in transforms]}'
    return found[0]


def schedulers(cfg):
    return {s['type']: s for s in cfg.param_scheduler}


def test_table_covers_every_det_config():
    """Every det config but DINO's and Mask2Former's (their recipe tables: tests/test_det_dino.py,
    tests/test_mask2former.py)."""
    import glob
    names = {osp.splitext(osp.basename(p))[0]
             for p in glob.glob(osp.join(REPO_ROOT, 'configs', 'det', '*.py'))}
    own_tables = ('dino_', 'mask2former_')
    assert {n for n in names if not n.startswith(own_tables)} == set(RECIPES)
    assert sum(n.startswith('dino_') for n in names) == 9
    assert sum(n.startswith('mask2former_') for n in names) == 2


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_optimizer(name):
    cfg, want = load(name), RECIPES[name]
    opt = dict(cfg.optim_wrapper.optimizer)
    opt.pop('_scope_', None)
    opt.setdefault('betas', (0.9, 0.999))  # torch's AdamW default
    assert opt == want['optimizer'], want['file']
    custom = cfg.optim_wrapper.get('paramwise_cfg', {}).get('custom_keys', {})
    assert custom.get('norm', {}).get('decay_mult') == want['norm_decay_mult']
    assert cfg.optim_wrapper.get('clip_grad') == want['grad_clip']
    assert cfg.optim_wrapper.type == 'FiniteOptimWrapper'  # fp32 by default; --amp switches to AMP


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_backbone_regularisation_and_kernels(name):
    backbone, want = load(name).model.backbone, RECIPES[name]
    assert backbone.drop_path_rate == want['drop_path_rate']
    assert list(backbone.focal_levels) == want['focal_levels']
    assert list(backbone.focal_windows) == want['focal_windows']


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_schedule_and_batch(name):
    cfg, want = load(name), RECIPES[name]
    assert cfg.train_cfg.type == 'ResumableEpochBasedTrainLoop'
    assert cfg.train_cfg.max_epochs == want['max_epochs']
    assert cfg.train_cfg.get('val_interval', 1) == 1  # official: evaluate every epoch
    sched = schedulers(cfg)
    assert set(sched) == {'LinearLR', 'MultiStepLR'}
    step = sched['MultiStepLR']
    assert step['by_epoch'] and step['milestones'] == want['milestones']
    assert step['gamma'] == 0.1 and step['begin'] == 0 and step['end'] == want['max_epochs']
    warm = sched['LinearLR']
    assert not warm['by_epoch'] and warm['begin'] == 0
    assert warm['end'] == want['warmup_iters'] and warm['start_factor'] == want['warmup_ratio']
    assert cfg.train_dataloader.batch_size == want['batch_per_gpu']
    assert cfg.auto_scale_lr.base_batch_size == want['base_batch_size']
    assert want['batch_per_gpu'] * want['gpus'] == cfg.auto_scale_lr.base_batch_size
    assert cfg.auto_scale_lr.enable is False  # --auto-scale-lr turns it on


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_train_pipeline_scales(name):
    cfg, want = load(name), RECIPES[name]
    pipeline = cfg.train_dataloader.dataset.pipeline
    types = [t['type'] for t in pipeline]
    assert types == ['LoadImageFromFile', 'LoadAnnotations', 'RandomFlip', 'RandomChoice',
                     'PackDetInputs']
    ann = by_type(pipeline, 'LoadAnnotations')
    assert ann['with_bbox'] and ann.get('with_mask', False) == want['with_mask']
    assert by_type(pipeline, 'RandomFlip')['prob'] == 0.5
    resize_only, resize_crop_resize = by_type(pipeline, 'RandomChoice')['transforms']
    assert [t['type'] for t in resize_only] == ['RandomChoiceResize']
    assert [tuple(s) for s in resize_only[0]['scales']] == MULTI_SCALES
    assert [t['type'] for t in resize_crop_resize] == [
        'RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize']
    first, crop, second = resize_crop_resize
    assert [tuple(s) for s in first['scales']] == CROP_SCALES
    assert crop['crop_type'] == 'absolute_range' and tuple(crop['crop_size']) == CROP_SIZE
    assert crop['allow_negative_crop'] is True
    assert [tuple(s) for s in second['scales']] == MULTI_SCALES
    assert all(t['keep_ratio'] for t in (resize_only[0], first, second))
    # test: single scale 1333x800; Normalize + Pad(32) of 2.x are the data preprocessor
    test_resize = by_type(cfg.val_dataloader.dataset.pipeline, 'Resize')
    assert tuple(test_resize['scale']) == (1333, 800) and test_resize['keep_ratio']
    pre = cfg.model.data_preprocessor
    assert pre.mean == [123.675, 116.28, 103.53] and pre.std == [58.395, 57.12, 57.375]
    assert pre.bgr_to_rgb and pre.pad_size_divisor == 32


def mmdet2_lr(base, it, epoch, steps, warmup_iters=500, warmup_ratio=0.001):
    """mmdet 2.x StepLrUpdaterHook with linear warm-up (the official runs' LR), per iteration."""
    lr = base * 0.1**sum(epoch >= s for s in steps)
    if it < warmup_iters:
        lr *= 1 - (1 - it / warmup_iters) * (1 - warmup_ratio)
    return lr


@pytest.mark.parametrize('name', ['maskrcnn_focalnet_t_lrf_1x', 'maskrcnn_focalnet_t_lrf_3x',
                                  'atss_focalnet_t_lrf_3x', 'sparsercnn_focalnet_t_lrf_3x'])
def test_lr_schedule_reproduces_mmdet2_steps_and_warmup(name):
    """Step the config's mmengine schedulers as ParamSchedulerHook does (iteration-based after
    every iteration, epoch-based after every epoch) and compare every iteration's LR with the
    mmdet 2.x formula: the step epochs exactly; the warm-up within 0.21% (mmengine's LinearLR
    with end=500 reaches the full LR at iteration 499, mmdet 2.x at 500; end=500 is mmdet's own
    translation of warmup_iters=500)."""
    cfg = load(name)
    base = cfg.optim_wrapper.optimizer.lr
    iters_per_epoch = 40  # short epochs: warm-up spans several, as it can on small data sets
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=base)
    wrapper = OptimWrapper(optimizer)
    built = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper, _scope_='mmengine'))
             for s in cfg.param_scheduler]
    steps = schedulers(cfg)['MultiStepLR']['milestones']
    it = 0
    for epoch in range(cfg.train_cfg.max_epochs):
        for _ in range(iters_per_epoch):
            expected = mmdet2_lr(base, it, epoch, steps)
            tolerance = 2.1e-3 if it < 500 else 1e-6
            assert optimizer.param_groups[0]['lr'] == pytest.approx(expected, rel=tolerance), \
                (epoch, it)
            it += 1
            for s in built:
                if not s.by_epoch:
                    s.step()
        for s in built:
            if s.by_epoch:
                s.step()


def test_cascade_model_is_mmdet_cascade_with_official_heads():
    """Everything but backbone/neck/box heads is mmdet's Cascade Mask R-CNN base; the box heads
    are the official 4conv1fc SyncBN heads with GIoU (weight 10) on decoded boxes."""
    ours = load('cascade_maskrcnn_focalnet_t_lrf_3x').model.to_dict()
    ref = Config.fromfile(
        osp.join(MMDET_CONFIGS, '_base_', 'models', 'cascade-mask-rcnn_r50_fpn.py')).model.to_dict()
    for key in ('type', 'data_preprocessor', 'rpn_head', 'train_cfg', 'test_cfg'):
        assert ours[key] == ref[key], key
    assert {k: v for k, v in ours['roi_head'].items() if k != 'bbox_head'} == \
        {k: v for k, v in ref['roi_head'].items() if k != 'bbox_head'}
    assert {k: v for k, v in ours['neck'].items() if k != 'in_channels'} == \
        {k: v for k, v in ref['neck'].items() if k != 'in_channels'}
    stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
    for head, std in zip(ours['roi_head']['bbox_head'], stds, strict=True):
        assert head['type'] == 'ConvFCBBoxHead'
        assert (head['num_shared_convs'], head['num_shared_fcs']) == (4, 1)
        assert head['norm_cfg'] == dict(type='SyncBN', requires_grad=True)
        assert head['loss_bbox'] == dict(type='GIoULoss', loss_weight=10.0)
        assert head['reg_decoded_bbox'] is True and head['reg_class_agnostic'] is False
        assert head['bbox_coder']['target_stds'] == std


def test_atss_model_is_mmdet_atss_on_three_stages():
    ours = load('atss_focalnet_t_lrf_3x').model.to_dict()
    ref = Config.fromfile(
        osp.join(MMDET_CONFIGS, 'atss', 'atss_r50_fpn_1x_coco.py')).model.to_dict()
    for key in ('type', 'data_preprocessor', 'bbox_head', 'train_cfg', 'test_cfg'):
        assert ours[key] == ref[key], key
    assert ours['backbone']['out_indices'] == (1, 2, 3)
    neck = ours['neck']
    assert (neck['in_channels'], neck['start_level']) == ([192, 384, 768], 0)
    assert neck['add_extra_convs'] == 'on_output'
    assert (neck['num_outs'], neck['out_channels']) == (5, 256)


def test_sparse_rcnn_uses_300_proposals():
    model = load('sparsercnn_focalnet_t_lrf_3x').model
    assert model.rpn_head.num_proposals == 300
    assert model.test_cfg.rcnn.max_per_img == 300
    assert model.roi_head.num_stages == 6
