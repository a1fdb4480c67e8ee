"""The data a config points at exists, checked *before* any model is built: a missing data set
costs a second and one clear line instead of a traceback after minutes of model building."""
import os.path as osp
from typing import Iterator, List, Tuple

from mmengine.config import Config

#: where each library's data is expected, for the one-line error (docs/training.md "Data preparation")
LAYOUT_HINTS = {
    'mmdet': 'COCO: data/coco/{annotations/instances_{train,val}2017.json,train2017/,val2017/}',
    'mmseg': 'ADE20K: data/ade/ADEChallengeData2016/{images,annotations}/{training,validation}/',
    'mmpretrain': 'ImageNet: data/imagenet/{train,val}/ (+ meta/{train,val}.txt)',
}


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a config's data set is not where the config says."""


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
