"""Every configs/cls config loads, builds and says what its header promises.

Models are built on the meta device (shapes only: no memory, no init time). Configs whose model
runs for real in another test (T/S/B, L-fl3: test_cls_timm_parity; the small-image ones: below;
fine-tuning: test_cls_train) skip the meta forward, which costs seconds of shape propagation.
"""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

import focalnet_mm  # noqa: F401  (registers FocalNet)
from focalnet_mm.archs import ARCHS, TIMM_NAMES

from conftest import REPO_ROOT, parsed_config, sweep
from meta_build import on_meta

#: number of classes of each preset's released classification head
NUM_CLASSES = {name: (21842 if name.split('_')[0] in ('large', 'xlarge', 'huge') else 1000)
               for name in ARCHS}

CLS_DIR = osp.join(REPO_ROOT, 'configs', 'cls')
ALL_CONFIGS = sorted(osp.basename(p) for p in glob.glob(osp.join(CLS_DIR, '*.py')))

#: one config per released checkpoint: arch, drop_path of the official yaml, eval crop, resize
PRESET_CONFIGS = {
    'focalnet_t_srf_in1k.py': ('tiny_srf', 0.2, 224, 256),
    'focalnet_t_lrf_in1k.py': ('tiny_lrf', 0.2, 224, 256),
    'focalnet_s_srf_in1k.py': ('small_srf', 0.3, 224, 256),
    'focalnet_s_lrf_in1k.py': ('small_lrf', 0.3, 224, 256),
    'focalnet_b_srf_in1k.py': ('base_srf', 0.5, 224, 256),
    'focalnet_b_lrf_in1k.py': ('base_lrf', 0.5, 224, 256),
    'focalnet_t_iso_in1k.py': ('tiny_iso', 0.2, 224, 256),
    'focalnet_s_iso_in1k.py': ('small_iso', 0.2, 224, 256),
    'focalnet_b_iso_in1k.py': ('base_iso', 0.2, 224, 256),
    'focalnet_l_fl3_in22k_384.py': ('large_fl3', 0.5, 384, 438),
    'focalnet_l_fl4_in22k_384.py': ('large_fl4', 0.5, 384, 438),
    'focalnet_xl_fl3_in22k_384.py': ('xlarge_fl3', 0.5, 384, 438),
    'focalnet_xl_fl4_in22k_384.py': ('xlarge_fl4', 0.5, 384, 438),
    'focalnet_h_fl3_in22k.py': ('huge_fl3', 0.5, 224, 256),
    'focalnet_h_fl4_in22k.py': ('huge_fl4', 0.5, 224, 256),
}

#: the quick loop's configs: one per family (hierarchical 1k, isotropic, 22k at 384 with the
#: large flags, small images); the whole suite builds every one
QUICK = ('focalnet_t_srf_in1k.py', 'focalnet_t_iso_in1k.py', 'focalnet_l_fl4_in22k_384.py',
         'focalnet_cifar10_32x32.py')

RUN_FOR_REAL_ELSEWHERE = {
    'focalnet_t_srf_in1k.py', 'focalnet_t_lrf_in1k.py', 'focalnet_s_srf_in1k.py',
    'focalnet_s_lrf_in1k.py', 'focalnet_b_srf_in1k.py', 'focalnet_b_lrf_in1k.py',
    'focalnet_l_fl3_in22k_384.py', 'focalnet_t_srf_in1k_finetune.py', 'focalnet_cifar10_32x32.py',
    'focalnet_p4_e64_tinyimagenet_64x64.py'}

#: published parameter counts in millions, 1000-class heads: (value, half its last digit).
#: T/S/B from the official model zoo (two decimals), isotropic from the official README (one
#: decimal).
OFFICIAL_PARAMS_M = {
    'tiny_srf': (28.43, 0.005), 'tiny_lrf': (28.65, 0.005), 'small_srf': (49.89, 0.005),
    'small_lrf': (50.34, 0.005), 'base_srf': (88.15, 0.005), 'base_lrf': (88.75, 0.005),
    'tiny_iso': (5.9, 0.05), 'small_iso': (22.4, 0.05), 'base_iso': (87.2, 0.05),
}


def load(name):
    """A private copy of the parsed config."""
    return copy.deepcopy(parsed_config(osp.join(CLS_DIR, name)))


def without_scope(transforms):
    return [{k: v for k, v in t.items() if k != '_scope_'} for t in transforms]


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    """mmpretrain's default scope for each test, the previous one restored after: another
    module's scope (mmseg, mmdet) must not decide where ``ImageClassifier`` is looked up."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


@pytest.fixture
def meta_device():
    """Build modules (ours and timm's) on the meta device: see meta_build.on_meta."""
    with on_meta():
        yield


def test_every_released_checkpoint_has_a_config():
    assert set(PRESET_CONFIGS) <= set(ALL_CONFIGS)
    assert {arch for arch, *_ in PRESET_CONFIGS.values()} == set(NUM_CLASSES)


@pytest.mark.parametrize('name', sweep(ALL_CONFIGS, QUICK))
def test_config_builds_and_runs_on_meta(name, meta_device):
    cfg = load(name)
    assert cfg.custom_imports == dict(imports=['focalnet_mm'], allow_failed_imports=False)
    assert cfg.default_scope == 'mmpretrain'
    model = MODELS.build(cfg.model)
    num_classes = cfg.model.head.num_classes
    assert model.head.fc.out_features == num_classes
    if name not in RUN_FOR_REAL_ELSEWHERE:
        crop = next(t['crop_size'] for t in cfg.test_dataloader.dataset.pipeline
                    if t['type'] == 'CenterCrop')
        logits = model(torch.empty(2, 3, crop, crop), mode='tensor')
        assert logits.shape == (2, num_classes)
    assert cfg.data_preprocessor.num_classes == num_classes  # Mixup/CutMix one-hot width
    # the pooled feature is the last stage through its norm (the official final norm)
    backbone = model.backbone
    assert backbone.out_indices == (backbone.num_stages - 1, )
    assert cfg.model.head.in_channels == backbone.num_features[-1]


@pytest.mark.parametrize('name', sweep(PRESET_CONFIGS, set(QUICK) & set(PRESET_CONFIGS)))
def test_preset_config_matches_release(name, meta_device):
    arch, drop_path, crop, resize = PRESET_CONFIGS[name]
    cfg = load(name)
    assert cfg.model.backbone.arch == arch
    assert cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.model.head.num_classes == NUM_CLASSES[arch]
    # official evaluation: bicubic short-side resize to 256/224 x crop, centre crop, ImageNet stats
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert [t['type'] for t in pipeline] == ['LoadImageFromFile', 'ResizeEdge', 'CenterCrop', 'PackInputs']
    assert (pipeline[1]['scale'], pipeline[1]['edge'], pipeline[1]['interpolation'],
            pipeline[1]['backend']) == (resize, 'short', 'bicubic', 'pillow')
    assert pipeline[2]['crop_size'] == crop
    assert cfg.data_preprocessor.mean == [123.675, 116.28, 103.53]
    assert cfg.data_preprocessor.std == [58.395, 57.12, 57.375]
    assert (cfg.test_evaluator.type, cfg.test_evaluator.topk) == ('Accuracy', (1, 5))

    model = MODELS.build(cfg.model)
    params = sum(p.numel() for p in model.parameters())
    if arch in OFFICIAL_PARAMS_M:
        published, half_digit = OFFICIAL_PARAMS_M[arch]
        assert abs(params / 1e6 - published) <= half_digit
    if arch in TIMM_NAMES:
        timm = pytest.importorskip('timm')
        reference = timm.create_model(TIMM_NAMES[arch], num_classes=NUM_CLASSES[arch])
        assert params == sum(p.numel() for p in reference.parameters())


def test_official_training_recipe():
    """The ImageNet recipe of microsoft/FocalNet (config.py defaults + per-model yaml)."""
    cfg = load('focalnet_t_srf_in1k.py')
    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'AdamW'
    assert optim.optimizer.lr == pytest.approx(5e-4 * 1024 / 512)
    assert cfg.auto_scale_lr.base_batch_size == 1024
    assert cfg.train_dataloader.batch_size * 8 == 1024  # the "8 GPUs x 128" of the header
    assert (optim.optimizer.weight_decay, optim.optimizer.eps, optim.optimizer.betas) == \
        (0.05, 1e-8, (0.9, 0.999))
    assert optim.clip_grad == dict(max_norm=5.0)
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.end, warmup.start_factor) == ('LinearLR', 20, 1e-3)  # 1e-6 warm-up LR
    assert (cosine.type, cosine.begin, cosine.eta_min) == ('CosineAnnealingLR', 20, 1e-5)
    assert cfg.train_cfg.max_epochs == 300
    assert cfg.model.train_cfg.augments == [dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]
    assert cfg.model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    train = {t['type']: t for t in cfg.train_dataloader.dataset.pipeline}
    crop, rand_augment = train['RandomResizedCrop'], train['RandAugment']
    assert (crop['scale'], crop['interpolation']) == (224, 'bicubic')
    assert (rand_augment['magnitude_level'], rand_augment['magnitude_std'], rand_augment['num_policies'],
            rand_augment['policies']) == (9, 0.5, 2, 'timm_increasing')
    assert (train['RandomErasing']['erase_prob'], train['RandomErasing']['mode']) == (0.25, 'rand')


def test_no_weight_decay_on_one_dimensional_parameters():
    """Official rule: parameters with one dimension or named *.bias get no weight decay."""
    cfg = load('focalnet_b_iso_in1k.py')  # has layerscale gammas and post-norms
    cfg.model.backbone.arch = dict(patch_size=16, embed_dim=32, depths=(2, ), focal_levels=3,
                                   use_layerscale=True, use_postln=True)
    cfg.model.head.in_channels = 32
    model = MODELS.build(cfg.model)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay_of = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optim_wrapper.optimizer.param_groups:
        for p in group['params']:
            decay_of[names[id(p)]] = group['weight_decay']
    assert set(decay_of) == set(names.values())
    for name, param in model.named_parameters():
        official_no_decay = param.dim() == 1 or name.endswith('.bias')
        assert decay_of[name] == (0.0 if official_no_decay else 0.05), name
    assert any('gamma_1' in n for n in decay_of)


def test_finetune_config_starts_from_official_weights():
    cfg = load('focalnet_t_srf_in1k_finetune.py')
    init = cfg.model.backbone.init_cfg
    assert init.type == 'Pretrained'
    assert init.checkpoint == 'focalnet://tiny_srf'
    assert cfg.train_dataloader.dataset.type == cfg.val_dataloader.dataset.type == 'CustomDataset'
    base = load('focalnet_t_srf_in1k.py')
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg'):
        assert cfg[key] == base[key], key
    for loader in ('train_dataloader', 'test_dataloader'):
        assert without_scope(cfg[loader].dataset.pipeline) == without_scope(base[loader].dataset.pipeline)


@pytest.mark.parametrize('name, side, stage_sides, channels, params_m', [
    ('focalnet_cifar10_32x32.py', 32, [16, 8, 4], [96, 192, 384], 6.9),
    ('focalnet_p4_e64_tinyimagenet_64x64.py', 64, [16, 8, 4, 2], [64, 128, 256, 512], 23.9),
])
def test_small_image_configs_forward(name, side, stage_sides, channels, params_m):
    torch.manual_seed(0)
    cfg = load(name)
    assert isinstance(cfg.model.backbone.arch, dict)  # the free-form arch
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == params_m
    images = torch.randn(2, 3, side, side)
    backbone = model.backbone
    backbone.out_indices = tuple(range(backbone.num_stages))  # look at every stage map
    for i in backbone.out_indices:
        if not hasattr(backbone, f'norm{i}'):
            backbone.add_module(f'norm{i}', torch.nn.LayerNorm(backbone.num_features[i]))
    with torch.no_grad():
        maps = backbone(images)
    assert [tuple(m.shape[1:]) for m in maps] == [(c, s, s) for c, s in zip(channels, stage_sides)]
    backbone.out_indices = (backbone.num_stages - 1, )
    with torch.no_grad():
        logits = model(images, mode='tensor')
        feats = model.extract_feat(images, stage='backbone')
    assert logits.shape == (2, cfg.model.head.num_classes)
    assert torch.isfinite(logits).all() and logits.std() > 0
    assert len(feats) == 1 and feats[0].shape == (2, channels[-1], stage_sides[-1], stage_sides[-1])
