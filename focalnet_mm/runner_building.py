"""Shared plumbing of the tools in tools/ (train.py and test.py stay thin clients of the Runner).

Checks that the data a config points at exists *before* any model is built, so a missing data
set costs a second and one clear line instead of a traceback after minutes of model building.
"""
import importlib.util
import os.path as osp
from types import ModuleType
from typing import Iterator, List, Optional, Tuple

from mmengine.config import Config

#: where each library's data is expected, for the one-line error (docs/training.md "Data preparation")
LAYOUT_HINTS = {
    'mmdet': 'COCO: data/coco/{annotations/instances_{train,val}2017.json,train2017/,val2017/}',
    'mmseg': 'ADE20K: data/ade/ADEChallengeData2016/{images,annotations}/{training,validation}/',
    'mmpretrain': 'ImageNet: data/imagenet/{train,val}/ (+ meta/{train,val}.txt)',
}


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a config's data set is not where the config says."""


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    if not osp.isfile(path):
        raise FileNotFoundError(f'Config file {path} not found; configs live under configs/ '
                                '(see the README, "Model zoo and weights").')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def leaf_datasets(dataset: dict) -> Iterator[dict]:
    """Leaf dataset dicts of a possibly wrapped (Repeat/Concat/ClassBalanced) dataset config."""
    if not isinstance(dataset, dict):
        return
    if 'dataset' in dataset:
        yield from leaf_datasets(dataset['dataset'])
    elif 'datasets' in dataset:
        for d in dataset['datasets']:
            yield from leaf_datasets(d)
    else:
        yield dataset


def _required_paths(dataset: dict) -> List[str]:
    root = dataset.get('data_root') or ''
    paths = []
    ann_file = dataset.get('ann_file')
    if ann_file:
        paths.append(osp.join(root, ann_file))
    prefix = dataset.get('data_prefix')
    if isinstance(prefix, str):
        prefix = dict(img=prefix)
    for value in (prefix or {}).values():
        if isinstance(value, str) and value:
            paths.append(osp.join(root, value))
    if not paths and root:
        paths.append(root)
    return paths


def missing_data(cfg: Config, loaders: Tuple[str, ...]) -> List[Tuple[str, str]]:
    """(dataloader, path) pairs that a config needs but that do not exist."""
    missing = []
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not loader_cfg or not isinstance(loader_cfg, dict):
            continue
        for dataset in leaf_datasets(loader_cfg.get('dataset')):
            for path in _required_paths(dataset):
                if '://' not in path and not osp.exists(path):
                    missing.append((loader, path))
    return missing


def check_datasets(cfg: Config, loaders: Tuple[str, ...]) -> None:
    """Raise a one-line DatasetNotFoundError naming the expected layout and where it is documented."""
    missing = missing_data(cfg, loaders)
    if missing:
        loader, path = missing[0]
        # a config may name its own layout (e.g. the demo data names its generator)
        hint = cfg.get('dataset_layout_hint') or LAYOUT_HINTS.get(cfg.get('default_scope'),
                                                                  "the config's data_root")
        more = f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''
        raise DatasetNotFoundError(
            f'{path} not found for {loader}{more}. Expected {hint}; see docs/training.md "Data preparation", '
            f'or point the config elsewhere with --cfg-options {loader}.dataset.data_root=DIR')


# --------------------------------------------------------------------------- shared tool steps
def load_script(path: str, name: Optional[str] = None) -> ModuleType:
    """Import a script as a module (tools/ holds scripts, not a package), e.g. to call its main()."""
    spec = importlib.util.spec_from_file_location(name or osp.splitext(osp.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_work_dir(config_path: str) -> str:
    """mmdet's rule: ./work_dirs/<config name>."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def prepare_config(config_path: str, cfg_options: Optional[dict], launcher: str,
                   work_dir: Optional[str]) -> Config:
    """Steps shared by train/test: load the config, apply overrides, choose the work dir."""
    cfg = load_config(config_path, cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(config_path)
    return cfg


def setup_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` run on machines without CUDA (gloo backend, CPU DDP).

    mmengine 0.10.7 always calls ``torch.cuda.set_device`` when it starts a process group and
    wraps the model with ``device_ids=[LOCAL_RANK]``; both fail without a GPU. Here the process
    group is started with gloo first (the Runner then skips its own start) and the DDP wrapper is
    told to keep the CPU model. GPU runs are untouched.
    """
    from datetime import timedelta

    import torch
    import torch.distributed as torch_dist

    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise ValueError(f'--launcher {cfg.launcher} needs GPUs; on CPU start processes with '
                         'torchrun, e.g. bash tools/dist_train.sh CONFIG 2 (--launcher pytorch).')
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        timeout = dist_cfg.get('timeout')  # seconds, as mmengine reads it
        torch_dist.init_process_group(
            backend='gloo', **({} if timeout is None else dict(timeout=timedelta(seconds=timeout))))
    if cfg.get('strategy'):  # FlexibleRunner: FSDPStrategy passes device_id=LOCAL_RANK (a GPU)
        cfg.strategy.setdefault('model_wrapper', {}).setdefault('device_id', torch.device('cpu'))
    elif cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))


def finish_distributed() -> None:
    """Wait for every rank, then close the process group before the interpreter exits.

    mmengine leaves it open; tearing down a live gloo group at exit can abort a rank
    ("terminate called without an active exception") after the work is done.
    """
    import torch.distributed as torch_dist
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def build_runner_from_cfg(cfg: Config):
    """The config's own runner type, else mmengine's Runner (what mmdet's tools do).

    A config with a ``strategy`` (e.g. ``FSDPStrategy``) gets mmengine's FlexibleRunner: the
    plain Runner would ignore the strategy without a word. Every data set is wrapped so that a
    sample that cannot be loaded is skipped and named (``cfg.skip_bad_samples``, see
    :mod:`focalnet_mm.engine.bad_samples`); done here, after the tools' own edits of the
    dataloaders (e.g. ``--tta`` replacing the test pipeline).

    Each runner gets a visualizer of its own: mmengine's visualizers are process-wide instances
    looked up by name, so a second runner in one process (tools called in-process, the tests)
    would otherwise be handed the first one under the configs' shared name 'visualizer', with its
    class (e.g. a segmentation visualizer in a detection run) and its save_dir.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    from mmengine.visualization import Visualizer

    from .engine import wrap_datasets

    wrap_datasets(cfg)
    if isinstance(cfg.get('visualizer'), dict):
        name = cfg.visualizer.get('name') or 'visualizer'
        unique, k = name, 1
        # Visualizer.get_instance registers every subclass' instances in Visualizer's own table
        while Visualizer.check_instance_created(unique):
            k += 1
            unique = f'{name}-{k}'
        cfg.visualizer.name = unique

    if cfg.get('strategy') and 'runner_type' not in cfg:
        cfg.runner_type = 'FlexibleRunner'
    setup_cpu_distributed(cfg)
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
