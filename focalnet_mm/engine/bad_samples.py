"""A broken sample is skipped, named once and replaced, instead of ending a run hours in.

mmengine's BaseDataset fetches another sample only when a pipeline *returns* None; an image that
cannot be read or annotations that make a transform *raise* end the run. :class:`SkipBadSamples`
wraps any data set (mmdet, mmseg, mmpretrain; the runner a config names, :mod:`.runners`, puts it
around every leaf data set of the config, see :func:`wrap_datasets`): a sample whose loading raises
is named in the log with its file and error, replaced by another one (the data set's own
``_rand_another``, as for a None), and never loaded again; once more samples are known to be
broken than both ``max_bad_count`` and ``max_bad_share`` of the data set allow (the larger of the
two: a few broken files in a small set train through, a large share in a big one stops), the run
stops with one line that names the limit it passed.

Counting across DataLoader workers: each worker holds its own copy of the data set, and
non-persistent workers are new processes every epoch, so a count kept in the wrapper would be
per worker and forgotten each epoch. The wrapper instead keeps one byte per sample in shared
memory (a torch tensor moved to shared memory in the main process before any worker starts:
forked workers inherit it, spawned ones receive its handle). A worker that fails on a sample marks
it; the number of bad samples is the number of marks, the same in every worker, so the stop is
decided exactly where the mark that crosses the limit is set, and "named once" holds over workers
and epochs. The limit is a share of the whole data set, not of the samples seen so far: a stop
means that more than that share is certainly broken, never an early unlucky streak. Distributed
ranks each count the samples they load.
"""
import logging
from typing import Optional, Union

import numpy as np
import torch
from mmengine.logging import print_log
from torch.utils.data import get_worker_info

#: the configs' default: stop once more than 1 % of a data set cannot be loaded ...
DEFAULT_MAX_BAD_SHARE = 0.01
#: ... and more than 5 samples (1 % of the 60 images of a small fine-tuning set is not one file)
DEFAULT_MAX_BAD_COUNT = 5
#: file names of a sample, in the order they are named
_FILE_KEYS = ('img_path', 'seg_map_path', 'ann_path')


class TooManyBadSamplesError(RuntimeError):
    """More than the allowed share of a data set cannot be loaded."""


def one_line(error: BaseException) -> str:
    """The message of an error raised here, also when a DataLoader worker raised it (torch then
    re-raises it with the worker's traceback in front: the message is its last line)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else type(error).__name__
    name = f'{type(error).__name__}: '
    return last.split(name, 1)[1] if name in last else last


def _short_error(error: BaseException) -> str:
    first = (str(error).strip().splitlines() or [''])[0][:200]
    return f'{type(error).__name__}: {first}' if first else type(error).__name__


class SkipBadSamples:
    """Any data set whose samples that fail to load are skipped, named once and replaced.

    Args:
        dataset: the data set or its config.
        max_bad_share, max_bad_count: stop (:class:`TooManyBadSamplesError`) once more samples
            cannot be loaded than this share of the data set and than this count (the larger of
            the two is allowed; both 0: the first broken sample stops the run).
        max_refetch: replacements tried for one index before giving up.
        lazy_init: as mmengine's data sets: initialise on first use.
    """

    def __init__(self, dataset: Union[dict, object], max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
                 max_bad_count: int = DEFAULT_MAX_BAD_COUNT, max_refetch: int = 100,
                 lazy_init: bool = False):
        if isinstance(dataset, dict):
            from mmengine.registry import DATASETS
            dataset = DATASETS.build(dataset)
        if not 0 <= max_bad_share < 1:
            raise ValueError(f'skip_bad_samples.max_share must be in [0, 1), got {max_bad_share}')
        if int(max_bad_count) != max_bad_count or max_bad_count < 0:
            raise ValueError(f'skip_bad_samples.max_count must be a whole number >= 0, got {max_bad_count}')
        self.dataset = dataset
        self.max_bad_share = float(max_bad_share)
        self.max_bad_count = int(max_bad_count)
        self.max_refetch = int(max_refetch)
        self._bad: Optional[torch.Tensor] = None
        if not lazy_init:
            self.full_init()

    # -- what the runner, samplers and evaluators ask of a data set -------------------------
    def full_init(self) -> None:
        if self._bad is not None:
            return
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()
        # in shared memory before any DataLoader worker exists (see the module docstring)
        self._bad = torch.zeros(len(self.dataset), dtype=torch.uint8).share_memory_()

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):
        # everything else (pipeline, get_cat_ids, test_mode, ...) is the wrapped data set's;
        # the guard keeps unpickling (spawned workers) from recursing before `dataset` is set
        if name in ('dataset', '_bad') or name.startswith('__'):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    # -- loading ----------------------------------------------------------------------------
    @property
    def bad_count(self) -> int:
        """Samples known to be broken, over every worker of this process."""
        return 0 if self._bad is None else int(self._bad.sum())

    def max_bad(self) -> int:
        """Broken samples allowed: the larger of ``max_bad_count`` and ``max_bad_share`` of the set."""
        return max(self.max_bad_count, int(self.max_bad_share * len(self)))

    def limit_passed(self) -> str:
        """The limit that the broken samples passed, with what the other one allows."""
        by_share, total = int(self.max_bad_share * len(self)), len(self)
        share = f'max_share={self.max_bad_share:g}'
        if by_share > self.max_bad_count:
            return (f'more than skip_bad_samples.{share} allows ({by_share} of {total}; '
                    f'max_count={self.max_bad_count})')
        return (f'more than skip_bad_samples.max_count={self.max_bad_count} allows ({share} of '
                f'{total} would allow {by_share})')

    def __getitem__(self, idx: int):
        self.full_init()
        for _ in range(self.max_refetch + 1):
            if not self._bad[idx]:
                try:
                    return self.dataset[idx]
                except Exception as error:  # any failure of this sample's files or annotations
                    self._mark_bad(idx, error)
            idx = self._another()
        raise TooManyBadSamplesError(
            f'no loadable sample in {self.max_refetch + 1} tries ({self.bad_count} of {len(self)} '
            'samples are broken): run tools/check_dataset.py on the config and fix the files it names')

    def _another(self) -> int:
        rand_another = getattr(self.dataset, '_rand_another', None)  # mmengine's BaseDataset
        return int(rand_another()) if rand_another is not None else int(np.random.randint(len(self)))

    def files_of(self, idx: int) -> str:
        try:
            info = self.dataset.get_data_info(idx)
        except Exception:  # the annotations themselves are what failed
            return f'sample {idx}'
        files = [str(info[key]) for key in _FILE_KEYS if info.get(key)]
        return ', '.join(files) if files else f'sample {idx}'

    def _mark_bad(self, idx: int, error: BaseException) -> None:
        self._bad[idx] = 1
        bad, allowed, total = self.bad_count, self.max_bad(), len(self)
        files, why = self.files_of(idx), _short_error(error)
        if bad > allowed:
            raise TooManyBadSamplesError(
                f'{bad} of {total} samples ({bad / total:.1%}) cannot be loaded, '
                f'{self.limit_passed()}; the last: {files} ({why}). Run python '
                'tools/check_dataset.py CONFIG to list them all and fix or remove them '
                '(docs/custom_dataset.md)')
        worker = get_worker_info()
        where = f'DataLoader worker {worker.id}' if worker is not None else 'main process'
        print_log(f'skipped a sample that cannot be loaded: {files} ({why}); replaced by another '
                  f'sample, not loaded again ({bad} of {total} bad so far, at most {allowed} '
                  f'allowed; found by the {where})', logger='current', level=logging.WARNING)


class CheckSegMapSize:
    """Pipeline step after LoadAnnotations: raise when a label map is not the size of its image.

    mmseg would resize and crop both alike and fail later, in the model (``torch.stack`` of
    label crops of different sizes), where no data set wrapper can skip the sample.
    """

    def __call__(self, results: dict) -> dict:
        label = results.get('gt_seg_map')
        # the image as read: test pipelines resize it before loading the label (mmseg evaluates
        # at the label's own resolution)
        shape = results.get('ori_shape') or (results['img'].shape if 'img' in results else None)
        if label is not None and shape is not None and tuple(label.shape[:2]) != tuple(shape[:2]):
            raise ValueError(f'label map {results.get("seg_map_path")} is {label.shape[1]}x'
                             f'{label.shape[0]} but its image is {shape[1]}x{shape[0]}')
        return results


def _with_size_check(pipeline):
    """The pipeline with CheckSegMapSize right after its LoadAnnotations (dict configs)."""
    if not isinstance(pipeline, list) or any(
            isinstance(t, dict) and t.get('type') == 'CheckSegMapSize' for t in pipeline):
        return pipeline
    checked = []
    for transform in pipeline:
        checked.append(transform)
        if isinstance(transform, dict) and str(transform.get('type', '')).endswith('LoadAnnotations'):
            checked.append(dict(type='CheckSegMapSize'))
    return checked


# --------------------------------------------------------------------------- config side
def _wrap(dataset, limits: dict):
    if not isinstance(dataset, dict) or dataset.get('type') == 'SkipBadSamples':
        return dataset  # val and test loaders may share one config dict: wrapped once
    if 'dataset' in dataset:  # RepeatDataset, ClassBalancedDataset, MultiImageMixDataset
        dataset['dataset'] = _wrap(dataset['dataset'], limits)
        return dataset
    if 'datasets' in dataset:  # ConcatDataset
        dataset['datasets'] = [_wrap(d, limits) for d in dataset['datasets']]
        return dataset
    if 'pipeline' in dataset:
        dataset['pipeline'] = _with_size_check(dataset['pipeline'])
    return dict(type='SkipBadSamples', dataset=dataset, **limits)


def wrap_datasets(cfg, loaders=('train_dataloader', 'val_dataloader', 'test_dataloader')) -> None:
    """Put :class:`SkipBadSamples` around every leaf data set of the config's dataloaders (and
    :class:`CheckSegMapSize` after the LoadAnnotations of their pipelines).

    Leaves rather than the whole: a repeated or concatenated set then marks each file once, and
    each set's limits are its own. ``cfg.skip_bad_samples = dict(max_share=0.01, max_count=5)``
    (the default; either key alone keeps the other's default) stops a run once more samples are
    broken than the larger of the two allows; ``skip_bad_samples = None`` leaves the data sets as
    they are (the first broken sample ends the run, mmengine's behaviour).
    """
    setting = cfg.get('skip_bad_samples', {})
    if setting is None:
        return
    if not isinstance(setting, dict) or set(setting) - {'max_share', 'max_count'}:
        raise ValueError('skip_bad_samples must be None or dict(max_share=..., max_count=...), '
                         f'got {setting!r}')
    limits = dict(max_bad_share=setting.get('max_share', DEFAULT_MAX_BAD_SHARE),
                  max_bad_count=setting.get('max_count', DEFAULT_MAX_BAD_COUNT))
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if isinstance(loader_cfg, dict) and isinstance(loader_cfg.get('dataset'), dict):
            loader_cfg['dataset'] = _wrap(loader_cfg['dataset'], limits)
