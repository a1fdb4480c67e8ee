"""metafile.yml (mim model index): segmentation and classification entries agree with the configs.

The detection entries are checked beside the detection recipes (tests/test_det_configs.py).
"""
import glob
import os.path as osp

import pytest
import yaml

from focalnet_mm.weights.sources import WEIGHT_SOURCES

from conftest import REPO_ROOT, parsed_config


@pytest.fixture(scope='module')
def index():
    with open(osp.join(REPO_ROOT, 'metafile.yml')) as f:
        return yaml.safe_load(f)


def entries(index, folder):
    return {m['Config']: m for m in index['Models'] if m['Config'].startswith(f'configs/{folder}/')}


def config_files(folder):
    return sorted(osp.relpath(p, REPO_ROOT)
                  for p in glob.glob(osp.join(REPO_ROOT, 'configs', folder, '*.py')))


def test_every_model_names_a_collection_and_is_unique(index):
    collections = {c['Name'] for c in index['Collections']}
    names = [m['Name'] for m in index['Models']]
    assert len(names) == len(set(names))
    assert all(m['In Collection'] in collections for m in index['Models'])
    assert all(osp.isfile(osp.join(REPO_ROOT, m['Config'])) for m in index['Models'])


def test_segmentation_entries(index):
    # the six UPerNet ADE20K configs, not the demo (Mask2Former: tests/test_mask2former.py)
    seg = {path: entry for path, entry in entries(index, 'seg').items() if '/upernet_' in path}
    assert sorted(seg) == [p for p in config_files('seg') if '/upernet_' in p]
    for path, entry in seg.items():
        cfg = parsed_config(osp.join(REPO_ROOT, path))
        assert entry['Metadata']['Iterations'] == cfg.train_cfg.max_iters == 160000
        kind = 'lrf' if '_lrf_' in path else 'srf'
        assert 'Weights' not in entry  # not obtainable (microsoft/FocalNet#51)
        assert entry['Metadata']['Kernels'] == ('[9,11,13]' if kind == 'lrf' else '[9,11]')
        metrics = entry['Results'][0]['Metrics']
        assert 46 < metrics['mIoU'] < metrics['mIoU(ms+flip)'] < 52


def test_classification_entries(index):
    cls = entries(index, 'cls')
    released = [p for p in config_files('cls')
                if not p.endswith(('finetune.py', 'cifar10_32x32.py', 'tinyimagenet_64x64.py'))]
    assert sorted(cls) == released and len(released) == 15
    for path, entry in cls.items():
        cfg = parsed_config(osp.join(REPO_ROOT, path))
        assert entry['Metadata']['Classes'] == cfg.model.head.num_classes
        # Weights: a file that can be downloaded today, one of the sources of the short name the
        # config names; the official file where the release has it; absent where none exists
        arch = cfg.model.backbone.arch
        with open(osp.join(REPO_ROOT, path)) as f:
            assert f'focalnet://{arch}' in f.read()
        urls = [s.url for s in WEIGHT_SOURCES[arch]]
        official = [s.url for s in WEIGHT_SOURCES[arch] if s.format == 'official']
        if official:
            assert entry['Weights'] == official[0]
        elif 'Weights' in entry:
            assert entry['Weights'] in urls
        if not urls:
            assert 'Weights' not in entry
        if entry['Metadata']['Classes'] == 1000:
            assert 74 < entry['Results'][0]['Metrics']['Top 1 Accuracy'] < 85
