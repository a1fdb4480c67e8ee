"""Shared test helpers: the repository root, tool loading, and the real sample data in
../shared/data (skipped when absent)."""
import os
import os.path as osp
import sys
import types

import pytest
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = os.environ.get('FOCALNET_SHARED_DATA', osp.join(REPO_ROOT, '..', 'shared', 'data'))

# One thread per process: the end-to-end tests start tool subprocesses (two at a time for the
# distributed runs) on a 2-core machine, and oversubscribed OpenMP threads are 10-100x slower.
os.environ.setdefault('OMP_NUM_THREADS', '1')
torch.set_num_threads(1)


def load_tool(relative_path, name=None):
    """A script under the repository root (e.g. 'tools/infer.py') imported as a module."""
    from focalnet_mm.cli import load_script
    return load_script(osp.join(REPO_ROOT, relative_path), name)


def perturb_(model, seed=0):
    """Random non-trivial values everywhere (norm weights too), so a swapped key shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model.eval()


@pytest.fixture
def yacs_cfg_node(monkeypatch):
    """A stand-in ``yacs.config.CfgNode`` (the official training code pickles its config as one)."""
    yacs, yacs_config = types.ModuleType('yacs'), types.ModuleType('yacs.config')

    class CfgNode(dict):
        pass

    CfgNode.__module__, CfgNode.__qualname__ = 'yacs.config', 'CfgNode'
    yacs_config.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, 'yacs', yacs)
    monkeypatch.setitem(sys.modules, 'yacs.config', yacs_config)
    return CfgNode


def shared_dataset(name):
    path = osp.join(SHARED_DATA, name)
    if not osp.isdir(path):
        pytest.skip(f'{path} not found: these tests use the real sample data that CI provides in '
                    '../shared/data (set FOCALNET_SHARED_DATA to point elsewhere)')
    return path


@pytest.fixture
def coco_mini():
    """6 real COCO 2017 images with their instance annotations (one image without objects)."""
    return shared_dataset('coco_mini')


@pytest.fixture
def camvid_mini():
    """5 real CamVid street frames with 32-class label maps."""
    return shared_dataset('camvid_mini')


@pytest.fixture
def repo_root():
    return REPO_ROOT
