"""Compatibility fixes between torch >= 2.6, transformers 5.x and the OpenMMLab 2.x stack.

Applied once by ``import focalnet_mm`` (never by editing site-packages):

* mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; torch >= 2.6 defaults to safe
  loading, which refuses mmengine's own checkpoints (numpy metadata, message-hub buffers). We keep
  safe loading on and allow exactly the types mmengine writes, so ``--resume`` works and an
  arbitrary pickle is still refused.
* mmengine resolves ``mmdet::`` / ``mmseg::`` config bases with ``pkg_resources`` and re-reads
  every metafile of the package per base; we do the same lookup with ``importlib.metadata`` and a
  cache, so bases resolve without pkg_resources and a config parses in a fraction of the time.
* mmpretrain 1.2.0 imports its multimodal models when transformers >= 4.28 is present, and they
  fail to define under transformers 5.x (so ``import mmdet.models`` fails too). See
  :mod:`focalnet_mm._preload`, which also runs at interpreter start in the environment that
  tools/setup_env.sh builds, so the import order does not matter there.
"""
import importlib.metadata
import functools
import importlib.util
import os.path as osp
import pickle
import sys
import warnings

import torch

from . import _preload

_APPLIED = False


def _history_buffer_getattr(obj, name):
    """Stand-in for ``builtins.getattr`` inside safe loading, limited to HistoryBuffer methods.

    mmengine pickles HistoryBuffer's statistics methods as ``getattr(HistoryBuffer, 'mean')``;
    a general getattr would let a checkpoint reach anything, so only those lookups resolve.
    """
    from mmengine.logging import HistoryBuffer
    allowed = {'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods}
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({obj!r}, {name!r}) in a checkpoint: only mmengine HistoryBuffer '
        'statistics are allowed in safe loading')


def mmengine_checkpoint_safe_globals():
    """The non-tensor types found in checkpoints written by mmengine's Runner."""
    import collections

    import numpy as np
    from mmengine.logging import HistoryBuffer

    numpy_types = [np.ndarray, np.dtype, np.core.multiarray._reconstruct, np.core.multiarray.scalar]
    numpy_types += [type(np.dtype(t)) for t in (
        'float16', 'float32', 'float64', 'int8', 'int16', 'int32', 'int64', 'uint8', 'bool')]
    return [HistoryBuffer, collections.OrderedDict, collections.defaultdict, *numpy_types,
            (_history_buffer_getattr, 'builtins.getattr')]


def allow_mmengine_checkpoints():
    """Let ``torch.load(weights_only=True)`` read mmengine checkpoints (and nothing more)."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(mmengine_checkpoint_safe_globals())


@functools.lru_cache(maxsize=None)
def _installed_path(package):
    """importlib.metadata version of mmengine's ``get_installed_path`` (no pkg_resources)."""
    try:
        dist = importlib.metadata.distribution(package)
        top = (dist.read_text('top_level.txt') or package).split('\n')[0]
        return osp.join(str(dist.locate_file('')), top)
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise
        return osp.dirname(spec.origin)


@functools.lru_cache(maxsize=None)
def _is_installed(package):
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        return importlib.util.find_spec(package) is not None


@functools.lru_cache(maxsize=None)
def _external_config_index(package_path):
    """Config name -> metafile entry of an OpenMMLab package, read once per process.

    mmengine re-reads every metafile of the package (about 250 for mmpretrain) for each
    ``pkg::`` base it resolves, which makes one config take seconds to parse.
    """
    from mmengine.fileio import load
    index = {}
    meta_index = load(osp.join(package_path, '.mim', 'model-index.yml'))
    for meta_path in meta_index['Import']:
        for model_cfg in load(osp.join(package_path, '.mim', meta_path)).get('Models', []):
            if 'Config' in model_cfg:
                index.setdefault(model_cfg['Config'].partition('/')[-1], model_cfg)
    return index


def _cfg_metainfo(package_path, cfg_path):
    index = _external_config_index(package_path)
    if cfg_path not in index:
        raise ValueError(f'{cfg_path} is not a model config of {package_path}')  # mmengine then tries _base_
    return index[cfg_path]


def fast_config_bases():
    """Resolve ``mmdet::``/``mmseg::``/``mmpretrain::`` bases with importlib.metadata and a cache.

    Works without ``pkg_resources`` (setuptools >= 82) and avoids mmengine's per-base reload of
    pkg_resources and of every metafile. Bases parsed before ``import focalnet_mm`` (mmengine's
    own tools) still use mmengine's path, which setup_env.sh keeps working (setuptools<82).
    """
    import mmengine.config.utils as config_utils
    for module_name in ('mmengine.utils.package_utils', 'mmengine.utils', 'mmengine.config.config',
                        'mmengine.config.utils'):
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
        for name, fn in (('get_installed_path', _installed_path), ('is_installed', _is_installed)):
            if hasattr(module, name):
                setattr(module, name, fn)
    config_utils._get_cfg_metainfo = _cfg_metainfo


def apply():
    """Apply every fix once; safe to call repeatedly."""
    global _APPLIED
    if _APPLIED:
        return
    _APPLIED = True
    # mmengine imports pkg_resources to resolve mmdet::/mmseg:: bases; its deprecation notice is
    # noise for our users (setup_env.sh pins setuptools<82 so it keeps working).
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
    _preload.keep_mmpretrain_importable()
    allow_mmengine_checkpoints()
    fast_config_bases()
