"""tools/train.py and tools/test.py on the cls configs, with a tiny ImageNet-layout data set.

The data set is written by tools/data/make_demo_imagenet.py into tmp_path; the tools run in this
process (one torch thread) exactly as from the command line.
"""
import functools
import glob
import json
import os
import os.path as osp
import pickle

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import DATASETS, MODELS

import focalnet_mm  # noqa: F401  (registers FocalNet)

from conftest import REPO_ROOT, load_tool

CLS_DIR = osp.join(REPO_ROOT, 'configs', 'cls')
NUM_CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 8, 3


@pytest.fixture(scope='module')
def demo_imagenet(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cls') / 'demo_imagenet')
    counts = load_tool('tools/data/make_demo_imagenet.py').write_dataset(
        root, classes=NUM_CLASSES, train_per_class=TRAIN_PER_CLASS, val_per_class=VAL_PER_CLASS,
        size=64, seed=0)
    assert counts == {'train': NUM_CLASSES * TRAIN_PER_CLASS, 'val': NUM_CLASSES * VAL_PER_CLASS}
    return root


def loader_options(data_root, batch_size):
    options = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options += [f'{loader}.dataset.data_root={data_root}', f'{loader}.num_workers=0',
                    f'{loader}.batch_size={batch_size}']
    return options


def read_val_metrics(work_dir):
    """Per-epoch validation metrics from the run's vis_data/scalars.json."""
    (scalars, ) = [osp.join(root, 'scalars.json') for root, _, files in os.walk(work_dir)
                   if 'scalars.json' in files]
    with open(scalars) as f:
        records = [json.loads(line) for line in f]
    return [r for r in records if 'accuracy/top1' in r], [r for r in records if 'loss' in r]


@pytest.mark.slow
def test_train_then_test_small_image_config(demo_imagenet, tmp_path):
    """2 epochs of the 64x64 config (real arch and recipe) report accuracy; test.py reproduces it."""
    work_dir = str(tmp_path / 'work')
    config = osp.join(CLS_DIR, 'focalnet_p4_e64_tinyimagenet_64x64.py')
    train = load_tool('tools/train.py')
    runner = train.main([config, '--work-dir', work_dir, '--cfg-options',
                         *loader_options(demo_imagenet, 8), 'train_cfg.max_epochs=2',
                         'param_scheduler.0.end=1', 'param_scheduler.1.begin=1',
                         'default_hooks.logger.interval=1', 'randomness.seed=0'])
    assert runner.train_dataloader.dataset.metainfo['classes'] == tuple(
        f'n{k:08d}' for k in range(NUM_CLASSES))

    val, train_logs = read_val_metrics(work_dir)
    num_val = NUM_CLASSES * VAL_PER_CLASS
    assert [r['step'] for r in val] == [1, 2]
    for record in val:  # a real accuracy over the 12 validation images, in percent
        assert 0 <= record['accuracy/top1'] <= record['accuracy/top5'] <= 100
        assert round(record['accuracy/top1'] * num_val / 100, 3).is_integer()
    losses = [r['loss'] for r in train_logs]
    iters_per_epoch = NUM_CLASSES * TRAIN_PER_CLASS // 8
    assert len(losses) == 2 * iters_per_epoch
    assert all(0 < loss < 20 for loss in losses)
    # it learns: the second epoch's mean loss is below the first's (5.2 -> 4.1 when written)
    assert sum(losses[iters_per_epoch:]) < sum(losses[:iters_per_epoch])

    first = torch.load(osp.join(work_dir, 'epoch_1.pth'), map_location='cpu', weights_only=True)
    last = torch.load(osp.join(work_dir, 'epoch_2.pth'), map_location='cpu', weights_only=True)
    assert not torch.equal(first['state_dict']['backbone.layers.2.blocks.0.modulation.f.weight'],
                           last['state_dict']['backbone.layers.2.blocks.0.modulation.f.weight'])

    test = load_tool('tools/test.py')
    metrics = test.main([config, osp.join(work_dir, 'epoch_2.pth'), '--work-dir',
                         str(tmp_path / 'test'), '--show-dir', 'painted',
                         '--cfg-options', *loader_options(demo_imagenet, 8)])
    # --show-dir: mmpretrain paints each validation image with its prediction
    painted = glob.glob(str(tmp_path / 'test' / '**' / 'painted' / '*'), recursive=True)
    assert len(painted) == NUM_CLASSES * VAL_PER_CLASS, painted
    assert metrics['accuracy/top1'] == pytest.approx(val[-1]['accuracy/top1'], abs=1e-6)
    assert metrics['accuracy/top5'] == pytest.approx(val[-1]['accuracy/top5'], abs=1e-6)


def randomized_official_file(config_name, path, seed=0):
    """Write random weights as an official classification file ({'model': ...}, norm, head)."""
    cfg = Config.fromfile(osp.join(CLS_DIR, config_name))
    classifier = MODELS.build(cfg.model).eval()
    gen = torch.Generator().manual_seed(seed)
    state = {}
    last = f'norm{classifier.backbone.out_indices[-1]}.'
    for key, value in classifier.backbone.state_dict().items():
        noise = torch.randn(value.shape, generator=gen)
        value = value + 0.1 * noise if value.dim() == 1 else 0.02 * noise
        state['norm.' + key[len(last):] if key.startswith(last) else key] = value
    state['head.weight'] = 0.02 * torch.randn(classifier.head.fc.weight.shape, generator=gen)
    state['head.bias'] = 0.1 * torch.randn(classifier.head.fc.bias.shape, generator=gen)
    torch.save({'model': state}, path)
    return cfg, state


def test_finetune_config_loads_official_backbone(tmp_path):
    """init_cfg Pretrained of the fine-tuning config: backbone + final norm from the file, new head."""
    pytest.importorskip('focalnet_mm.weights')
    path = str(tmp_path / 'focalnet_tiny_srf.pth')
    _, state = randomized_official_file('focalnet_t_srf_in1k.py', path)
    cfg = Config.fromfile(osp.join(CLS_DIR, 'focalnet_t_srf_in1k_finetune.py'))
    cfg.model.backbone.init_cfg.checkpoint = path
    cfg.model.head.num_classes = 5
    model = MODELS.build(cfg.model)
    model.init_weights()
    loaded = model.backbone.state_dict()
    for key, value in state.items():
        if key.startswith('head.'):
            continue
        ours = 'norm3.' + key[len('norm.'):] if key.startswith('norm.') else key
        assert torch.equal(loaded[ours], value), key
    assert model.head.fc.weight.shape == (5, 768)
    assert model.head.fc.weight.std().item() == pytest.approx(0.02, rel=0.2)  # fresh trunc-normal


@pytest.mark.slow
def test_official_file_through_test_tool_matches_timm(demo_imagenet, tmp_path):
    """tools/test.py + an official classification file == timm's model on the same file."""
    weights = pytest.importorskip('focalnet_mm.weights')
    timm = pytest.importorskip('timm')
    from timm.models.focalnet import checkpoint_filter_fn

    path = str(tmp_path / 'focalnet_tiny_srf.pth')
    cfg, state = randomized_official_file('focalnet_t_srf_in1k.py', path)
    assert not weights.is_mmengine_model_checkpoint(path)  # so test.py converts it
    preds_file = str(tmp_path / 'preds.pkl')
    options = [f'test_dataloader.dataset.data_root={demo_imagenet}', 'test_dataloader.num_workers=0',
               'test_dataloader.batch_size=4']
    metrics = load_tool('tools/test.py').main(
        [osp.join(CLS_DIR, 'focalnet_t_srf_in1k.py'), path, '--work-dir', str(tmp_path / 'work'),
         '--out', preds_file, '--cfg-options', *options])
    with open(preds_file, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == NUM_CLASSES * VAL_PER_CLASS

    # timm on the very same preprocessed images (ImageNet val list + the config's test pipeline)
    with torch.device('meta'), pytest.MonkeyPatch.context() as mp:  # init-free: weights assigned
        mp.setattr(torch, 'linspace', functools.partial(torch.linspace, device='cpu'))
        reference = timm.create_model('focalnet_tiny_srf', num_classes=1000)
    reference.load_state_dict(checkpoint_filter_fn({'model': state}, reference), strict=True,
                              assign=True)
    reference.eval()
    cfg.test_dataloader.dataset.data_root = demo_imagenet
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    preprocessor = MODELS.build(dict(type='ClsDataPreprocessor', **cfg.data_preprocessor))
    batch = preprocessor({'inputs': [dataset[i]['inputs'] for i in range(len(dataset))],
                          'data_samples': [dataset[i]['data_samples'] for i in range(len(dataset))]})
    with torch.no_grad():
        expected = reference(batch['inputs']).softmax(-1)
    by_path = {p['img_path']: p for p in preds}
    scores = torch.stack([by_path[dataset.get_data_info(i)['img_path']]['pred_score']
                          for i in range(len(dataset))])
    assert ((scores - expected).abs().max() / expected.abs().max()).item() <= 1e-5
    assert torch.equal(scores.argmax(1), expected.argmax(1))
    labels = torch.tensor([dataset.get_data_info(i)['gt_label'] for i in range(len(dataset))])
    top1 = (expected.argmax(1) == labels).float().mean().item() * 100
    assert metrics['accuracy/top1'] == pytest.approx(top1, abs=1e-4)
