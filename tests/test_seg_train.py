"""Segmentation end to end through tools/train.py, tools/test.py and tools/dist_train.sh.

Real CamVid frames (../shared/data/camvid_mini) and the synthetic ADE20K-layout demo data, with
the ADE20K config's model shrunk (FocalNet embed 16, one block per stage, 16-channel heads, BN
instead of SyncBN, no ImageNet weights) so that a few iterations take seconds on a CPU.
"""
import glob
import json
import os
import os.path as osp
import pickle
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, load_tool

T_SRF = osp.join(REPO_ROOT, 'configs', 'seg', 'upernet_focalnet_t_srf_512x512_160k_ade20k.py')
DEMO = osp.join(REPO_ROOT, 'configs', 'seg', 'demo', 'upernet_focalnet_t_srf_ade_demo.py')


train_tool, test_tool = load_tool('tools/train.py'), load_tool('tools/test.py')
make_demo_ade = load_tool('tools/data/make_demo_ade.py')

TINY_MODEL = """
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(embed_dim=16, depths=[1, 1, 1, 1], init_cfg=None),
    decode_head=dict(in_channels=[16, 32, 64, 128], channels=16, num_classes=num_classes,
                     norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=64, channels=16, num_classes=num_classes, norm_cfg=norm_cfg))
"""
# the same shrinking for configs used as they are (the demo), as --cfg-options
TINY_OPTIONS = [
    'model.backbone.embed_dim=16', 'model.backbone.depths=[1,1,1,1]',
    'model.decode_head.in_channels=[16,32,64,128]', 'model.decode_head.channels=16',
    'model.auxiliary_head.in_channels=64', 'model.auxiliary_head.channels=16',
]


def scalars(work_dir):
    """Training log records of vis_data/scalars.json (one dict per logged iteration)."""
    [path] = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f]


def layout_camvid(src, dst, scale=4):
    """CamVid frames and 32-class label maps at 1/scale size as a BaseSegDataset directory."""
    for sub in ('images', 'labels'):
        os.makedirs(osp.join(dst, sub))
    for path in sorted(glob.glob(osp.join(src, 'images', '*.png'))):
        name = osp.basename(path)
        image = Image.open(path).convert('RGB')
        size = (image.width // scale, image.height // scale)
        image.resize(size, Image.BILINEAR).save(osp.join(dst, 'images', name))
        label = Image.open(osp.join(src, 'labels', name[:-4] + '_P.png'))
        label.resize(size, Image.NEAREST).save(osp.join(dst, 'labels', name[:-4] + '_P.png'))
    with open(osp.join(src, 'codes.txt')) as f:
        return [line.strip() for line in f if line.strip()]


def camvid_config(tmp_path, root, classes):
    path = tmp_path / 'upernet_focalnet_tiny_camvid.py'
    path.write_text(f"""
_base_ = [{T_SRF!r}]
crop_size = (64, 64)
num_classes = {len(classes)}
{TINY_MODEL}
dataset = dict(type='BaseSegDataset', data_root={str(root)!r}, metainfo=dict(classes={tuple(classes)!r}),
               img_suffix='.png', seg_map_suffix='_P.png', reduce_zero_label=False,
               data_prefix=dict(img_path='images', seg_map_path='labels'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(_delete_=True, pipeline=train_pipeline, **dataset))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(_delete_=True, pipeline=test_pipeline, **dataset))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=8, val_interval=1000)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = []
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=8))
visualizer = dict(name='seg_test_camvid')
randomness = dict(seed=0)
""")
    return str(path)


def miou_of(results, num_classes, ignore_index=255):
    """mmseg's IoUMetric by hand: per-class IoU over all images, NaN-mean, in percent."""
    inter, union = np.zeros(num_classes), np.zeros(num_classes)
    for sample in results:
        pred = sample['pred_sem_seg']['data'].numpy().ravel()
        gt = sample['gt_sem_seg']['data'].numpy().ravel()
        pred, gt = pred[gt != ignore_index], gt[gt != ignore_index]
        inter += np.bincount(gt[pred == gt], minlength=num_classes)
        union += np.bincount(pred, minlength=num_classes) + np.bincount(gt, minlength=num_classes)
    union -= inter
    with np.errstate(invalid='ignore'):
        return float(np.nanmean(inter / union) * 100)


@pytest.mark.slow
def test_camvid_train_then_test_returns_miou(upernet_camvid_run, tmp_path):
    # layout_camvid + camvid_config trained by tools/train.py (conftest: once per run, shared
    # with the UPerNet export test)
    classes, config = upernet_camvid_run['classes'], upernet_camvid_run['config']
    labels = [np.array(Image.open(p)) for p in sorted(glob.glob(
        osp.join(upernet_camvid_run['root'], 'labels', '*')))]
    assert len(classes) == 32 and len(labels) == 5
    # the label maps hold class indices (0..31: 'Void' is 30), not colours
    assert all(label.ndim == 2 and label.max() < 32 for label in labels)
    assert classes[30] == 'Void' and 30 in np.unique(np.concatenate([lb.ravel() for lb in labels]))

    trained = upernet_camvid_run['work_dir']
    losses = [r['loss'] for r in scalars(trained) if 'loss' in r]
    assert len(losses) == 8 and np.isfinite(losses).all()
    assert np.mean(losses[-2:]) < np.mean(losses[:2])  # it learns (32-class CE starts near ln 32)
    checkpoint = osp.join(trained, 'iter_8.pth')
    assert osp.isfile(checkpoint)
    work_dir = str(tmp_path / 'work')  # this test's tools/test.py runs write here

    dump = str(tmp_path / 'results.pkl')
    painted = str(tmp_path / 'painted')
    metrics = test_tool.main([config, checkpoint, '--work-dir', work_dir, '--out', dump,
                              '--show-dir', painted,
                              '--cfg-options', 'visualizer.name=seg_test_camvid_test'])
    # --show-dir: mmseg's visualizer saves one painted frame per test image there
    assert len(glob.glob(osp.join(painted, '**', '*.png'), recursive=True)) == 5
    assert set(metrics) >= {'aAcc', 'mIoU', 'mAcc'}
    with open(dump, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 5
    assert all(r['pred_sem_seg']['data'].shape == (1, 180, 240) for r in results)  # full frames
    # the reported mIoU is that of the predictions on the real label maps
    assert metrics['mIoU'] == pytest.approx(miou_of(results, 32), abs=0.01)

    # multi-scale + flip (the ADE20K config's tta_pipeline: 6 scales x 2 flips), mmseg's TTA model
    cfg, _ = test_tool.make_config(test_tool.parse_args([config, checkpoint, '--tta']))
    assert cfg.model.type == 'SegTTAModel' and cfg.model.module.type == 'EncoderDecoder'
    assert cfg.test_dataloader.dataset.pipeline[1]['type'] == 'TestTimeAug'
    tta_dump = str(tmp_path / 'tta_results.pkl')
    tta = test_tool.main([config, checkpoint, '--tta', '--work-dir', work_dir, '--out', tta_dump,
                          '--cfg-options', 'visualizer.name=seg_test_camvid_tta'])
    with open(tta_dump, 'rb') as f:
        tta_results = pickle.load(f)
    assert [r['img_path'] for r in tta_results] == [r['img_path'] for r in results]
    assert all(r['pred_sem_seg']['data'].shape == (1, 180, 240) for r in tta_results)
    assert tta['mIoU'] == pytest.approx(miou_of(tta_results, 32), abs=0.01)
    # the 12 merged views change the prediction: not the single-scale model passed through
    changed = [(a['pred_sem_seg']['data'] != b['pred_sem_seg']['data']).float().mean().item()
               for a, b in zip(tta_results, results)]
    print(f'TTA changed {100 * np.mean(changed):.1f}% of the pixels; mIoU {metrics["mIoU"]} -> '
          f'{tta["mIoU"]}')
    assert np.mean(changed) > 0.001, changed


def test_demo_generator_writes_deterministic_ade_layout(tmp_path):
    root = make_demo_ade.make_demo_ade(str(tmp_path / 'a'), num_train=3, num_val=2, height=48,
                                       width=64, seed=0)
    assert root == str(tmp_path / 'a' / 'ADEChallengeData2016')
    layout = {osp.relpath(p, root) for p in glob.glob(osp.join(root, '*', '*', '*'))}
    assert layout == {f'images/training/ADE_train_{i:08d}.jpg' for i in (1, 2, 3)} | \
        {f'annotations/training/ADE_train_{i:08d}.png' for i in (1, 2, 3)} | \
        {f'images/validation/ADE_val_{i:08d}.jpg' for i in (1, 2)} | \
        {f'annotations/validation/ADE_val_{i:08d}.png' for i in (1, 2)}
    ade_values = {value for value, _ in make_demo_ade.CLASSES.values()} | {0}
    label = np.array(Image.open(osp.join(root, 'annotations/training/ADE_train_00000001.png')))
    image = Image.open(osp.join(root, 'images/training/ADE_train_00000001.jpg'))
    assert label.shape == (48, 64) and image.size == (64, 48) and image.mode == 'RGB'
    assert set(np.unique(label)) <= ade_values and len(np.unique(label)) >= 3

    def files(r):
        return {osp.relpath(p, r): open(p, 'rb').read() for p in glob.glob(osp.join(r, '*/*/*'))}

    again = make_demo_ade.make_demo_ade(str(tmp_path / 'b'), 3, 2, 48, 64, seed=0)
    other = make_demo_ade.make_demo_ade(str(tmp_path / 'c'), 3, 2, 48, 64, seed=1)
    assert files(root) == files(again)
    assert files(root) != files(other)
    # ADE20K class names: the generator's label values index ADE20KDataset's class list
    from mmseg.datasets import ADE20KDataset
    ade_classes = ADE20KDataset.METAINFO['classes']
    assert all(ade_classes[value - 1].strip() == name
               for name, (value, _) in make_demo_ade.CLASSES.items())
    with pytest.raises(SystemExit, match='--train and --val must be at least 1'):
        make_demo_ade.main(['--out', str(tmp_path / 'd'), '--train', '0'])


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def demo_options(root, name):
    loaders = ('train_dataloader', 'val_dataloader', 'test_dataloader')
    return ([f'{loader}.dataset.data_root={root}' for loader in loaders]
            + [f'{loader}.num_workers=0' for loader in loaders]
            + [f'{loader}.persistent_workers=False' for loader in loaders]
            + TINY_OPTIONS + ['train_dataloader.batch_size=2', 'train_cfg.max_iters=2',
                              'train_cfg.val_interval=2', f'visualizer.name={name}'])


@pytest.mark.slow
def test_demo_two_process_cpu_training_then_test(tmp_path, capfd):
    """tools/dist_train.sh CONFIG 2 on CPU (gloo), evaluating at the end; then tools/test.py."""
    root = make_demo_ade.make_demo_ade(str(tmp_path / 'ade_demo'), 4, 2, 64, 80)
    work_dir = str(tmp_path / 'work')
    for _ in range(2):  # a second try only if another process took the free port meanwhile
        env = dict(os.environ, PORT=str(free_port()), OMP_NUM_THREADS='1', PYTHON=sys.executable)
        proc = subprocess.run(
            ['bash', osp.join(REPO_ROOT, 'tools', 'dist_train.sh'), DEMO, '2', '--work-dir', work_dir,
             '--cfg-options', *demo_options(root, 'seg_test_demo_dist')],
            cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
        if 'address already in use' not in proc.stderr.lower():
            break
    assert proc.returncode == 0, proc.stderr[-3000:]
    [log] = glob.glob(osp.join(work_dir, '*', '*.log'))
    text = open(log).read()
    assert 'Distributed training: True' in text and 'GPU number: 2' in text  # world size 2
    # the end-of-training evaluation: 2 val images split over 2 processes, 1 iteration each
    assert re.search(r'Iter\(val\) \[1/1\]\s+aAcc: [\d.]+\s+mIoU: [\d.]+', text)
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))

    metrics = test_tool.main([DEMO, osp.join(work_dir, 'iter_2.pth'), '--work-dir', work_dir,
                              '--cfg-options', *demo_options(root, 'seg_test_demo_test')])
    assert 0 <= metrics['mIoU'] <= 100
    assert re.search(r'mIoU: [\d.]+', capfd.readouterr().out)  # printed by the test run


def test_demo_config_without_data_names_the_generator(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        train_tool.main([DEMO])
    message = str(info.value)
    assert '\n' not in message and 'data/ade_demo/ADEChallengeData2016/images/training' in message
    assert 'python tools/data/make_demo_ade.py' in message
