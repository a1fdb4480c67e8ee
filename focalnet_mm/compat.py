"""Three fixes for the versions this package supports, applied by ``import focalnet_mm``.

The first two are applied only where the installed versions need them (the third always), and
the first FocalNet built in a process logs, through mmengine's current logger, what was changed
(:func:`log_applied`):

* Safe checkpoint loading (torch >= 2.6 with mmengine <= 0.10.7): torch now loads with
  ``weights_only=True`` by default and mmengine calls ``torch.load`` without the argument, so
  mmengine's own checkpoints (numpy metadata, message-hub buffers) are refused. We keep safe
  loading on and allow exactly the types mmengine writes: ``--resume`` works and an arbitrary
  pickle is still refused.
* ``mmdet::`` / ``mmseg::`` / ``mmpretrain::`` config bases (mmengine <= 0.10.7): mmengine
  resolves them with ``pkg_resources`` (gone from setuptools >= 82), reloading it and re-reading
  every metafile of the package (about 250 for mmpretrain) for each base. We do the same lookup
  with ``importlib.metadata`` and one index per package, which takes a config with mmpretrain
  bases from about 2.8 s to 0.7 s to parse.

* ``focalnet_mm::`` config bases: mmengine knows only its own list of OpenMMLab packages
  (``MODULE2PACKAGE``) and offers no way to add one, so this package adds its name there, and
  reads those bases without a ``focalnet_mm`` registry scope (it has no registries of its own).

One more, not applied at import but for the duration of an export (:func:`mmdeploy_export_fixes`,
used by ``focalnet_mm.deploy``): MMDeploy 1.3.1 (the last release) predates torch 2.9, whose
``torch.onnx.export`` defaults to the dynamo exporter (MMDeploy's rewriters and symbolics work with
the TorchScript one; the dynamo one also needs onnxscript), and torch 2.x removed the private
``symbolic_opset9._cast_Long`` that MMDeploy's RoIAlign symbolic imports.

Not patched but filtered (:func:`quiet_upstream_notices`, on each runner the package's tools
build): mmengine 0.10.7's two FileClient deprecation notices, which every training run prints.

Not patched but checked (:func:`check_transformers`): mmpretrain 1.2.0 needs transformers < 4.52
when transformers is installed (it imports names that 4.52 removed, and ``mmdet.models`` imports
mmpretrain); tools/setup_env.sh pins it, and other environments get a warning naming the fix.
"""
import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import os.path as osp
import pickle
import warnings
from typing import List, Optional

import torch
from packaging.version import Version

#: one line per fix applied in this process (logged by :func:`log_applied`)
APPLIED: List[str] = []
_applied = _logged = False


def _version(package: str) -> Optional[Version]:
    """Installed version of ``package`` (from its metadata, nothing imported), None if absent."""
    try:
        return Version(importlib.metadata.version(package))
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- safe checkpoint loading
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
    torch.serialization.add_safe_globals(mmengine_checkpoint_safe_globals())


def checkpoints_need_safe_globals() -> bool:
    """torch loads weights-only by default (>= 2.6) and mmengine does not say otherwise."""
    torch_version, mmengine_version = _version('torch'), _version('mmengine')
    return (torch_version is not None and torch_version.release >= (2, 6)
            and mmengine_version is not None and mmengine_version <= Version('0.10.7')
            and hasattr(torch.serialization, 'add_safe_globals'))


# --------------------------------------------------------------------------- config bases
@functools.lru_cache(maxsize=None)
def _installed_path(package):
    """importlib.metadata version of mmengine's ``get_installed_path`` (no pkg_resources).

    The folder comes from the import system (``find_spec`` of the distribution's top-level
    module), so editable installs, whose code is not in site-packages, resolve too.
    """
    try:
        dist = importlib.metadata.distribution(package)
        top = (dist.read_text('top_level.txt') or package.replace('-', '_')).split('\n')[0]
    except importlib.metadata.PackageNotFoundError:
        dist, top = None, package
    spec = importlib.util.find_spec(top)
    if spec is not None and spec.origin is not None:
        return osp.dirname(spec.origin)
    if dist is None:
        raise importlib.metadata.PackageNotFoundError(package)
    return osp.join(str(dist.locate_file('')), top)


@functools.lru_cache(maxsize=None)
def _is_installed(package):
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        return importlib.util.find_spec(package) is not None


@functools.lru_cache(maxsize=None)
def _external_config_index(package_path):
    """Config name -> metafile entry of an OpenMMLab package, read once per process."""
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
    if cfg_path not in index:  # mmengine then looks for a _base_ file of that name
        raise ValueError(f'{cfg_path} is not a model config of {package_path}')
    return index[cfg_path]


#: this package's name for ``focalnet_mm::`` config bases -> its pip distribution
PACKAGE = ('focalnet_mm', 'focalnet-mm')


def register_config_package():
    """Let ``_base_ = 'focalnet_mm::det/...'`` resolve like a local base.

    mmengine (<= 0.10.7 and today's main) accepts only the packages of its own
    ``MODULE2PACKAGE`` table, with no hook to add one, so the name is added there. It also tags
    every dict of a ``pkg::`` base with ``_scope_=pkg``; focalnet_mm has no registries of its own
    (FocalNet is registered in mmdet, mmseg and mmpretrain), so such a tag would make mmengine
    fall back to its root registries, e.g. mmcv's ``LoadAnnotations`` in place of mmdet's. Our
    bases therefore come without that tag: their dicts build in the config's ``default_scope``
    (mmdet / mmseg / mmpretrain, set by the library bases they inherit), as a copied config would.
    """
    from mmengine.config import Config
    from mmengine.config import utils as config_utils
    config_utils.MODULE2PACKAGE.setdefault(*PACKAGE)
    get_cfg_path = Config._get_cfg_path
    if getattr(get_cfg_path, '_focalnet_mm', False):
        return

    def _get_cfg_path(cfg_path, filename):
        path, scope = get_cfg_path(cfg_path, filename)
        return path, None if scope == PACKAGE[0] else scope

    _get_cfg_path._focalnet_mm = True
    Config._get_cfg_path = staticmethod(_get_cfg_path)


def config_bases_need_resolver() -> bool:
    """mmengine <= 0.10.7 resolves ``pkg::`` bases through pkg_resources."""
    version = _version('mmengine')
    return version is not None and version <= Version('0.10.7')


def resolve_config_bases_with_metadata():
    """Point mmengine's ``pkg::`` base resolution at the functions above.

    Config parsing calls ``get_installed_path`` / ``is_installed`` through the names
    ``mmengine.config.config`` imported, and ``_get_cfg_metainfo`` in ``mmengine.config.utils``;
    those three names are replaced, nothing else.
    """
    config_module = importlib.import_module('mmengine.config.config')
    config_utils = importlib.import_module('mmengine.config.utils')
    config_module.get_installed_path = _installed_path
    config_module.is_installed = _is_installed
    config_utils._get_cfg_metainfo = _cfg_metainfo


# --------------------------------------------------------------------------- transformers
#: mmpretrain 1.2.0 imports GenerationMixin & co. from transformers.modeling_utils (gone in 4.52)
FIRST_TRANSFORMERS_BREAKING_MMPRETRAIN = Version('4.52')


def check_transformers() -> Optional[str]:
    """A warning naming the fix when transformers would break ``import mmpretrain.models``."""
    mmpretrain_version, transformers_version = _version('mmpretrain'), _version('transformers')
    if (mmpretrain_version is None or transformers_version is None
            or mmpretrain_version > Version('1.2.0')
            or transformers_version.release < FIRST_TRANSFORMERS_BREAKING_MMPRETRAIN.release):
        return None
    message = (f'transformers {transformers_version} breaks mmpretrain {mmpretrain_version} (and '
               'mmdet.models, which imports it): pip install "transformers>=4.28,<4.52" '
               '(tools/setup_env.sh pins it).')
    warnings.warn(message, stacklevel=3)
    return message


# --------------------------------------------------------------------------- upstream notices
class UpstreamNoticeFilter(logging.Filter):
    """Drops two mmengine 0.10.7 deprecation notices that every training run prints and no config
    can avoid: ``CheckpointHook.before_train`` builds a ``FileClient`` "to keep backward
    compatibility" even when it uses ``get_file_backend`` (notice 1), and that FileClient's
    default backend is the ``HardDiskBackend`` alias (notice 2). A config that passes
    ``file_client_args`` itself still gets mmengine's notice about that argument.
    """
    NOTICES = ('"FileClient" will be deprecated in future.',
               '"HardDiskBackend" is the alias of "LocalBackend"')

    def filter(self, record):
        return not str(record.msg).startswith(self.NOTICES)


def quiet_upstream_notices(logger: logging.Logger) -> None:
    """Add :class:`UpstreamNoticeFilter` to ``logger`` (a runner's MMLogger), once."""
    if not any(isinstance(f, UpstreamNoticeFilter) for f in logger.filters):
        logger.addFilter(UpstreamNoticeFilter())


# --------------------------------------------------------------------------- MMDeploy exports
@contextlib.contextmanager
def mmdeploy_export_fixes():
    """Within the block, ``torch.onnx.export`` uses the TorchScript exporter unless told otherwise,
    and ``symbolic_opset9._cast_Long`` exists; both are restored on exit."""
    import torch.onnx.symbolic_opset9 as opset9
    export = torch.onnx.export
    dynamo = inspect.signature(export).parameters.get('dynamo')
    add_cast_long = not hasattr(opset9, '_cast_Long')
    if dynamo is not None and dynamo.default is True:
        torch.onnx.export = functools.wraps(export)(functools.partial(export, dynamo=False))
    if add_cast_long:  # what torch < 2.2 had: a Cast to int64
        opset9._cast_Long = lambda g, value, non_blocking: g.op(
            'Cast', value, to_i=torch._C._onnx.TensorProtoDataType.INT64)
    try:
        yield
    finally:
        torch.onnx.export = export
        if add_cast_long:
            del opset9._cast_Long


# --------------------------------------------------------------------------- apply and report
def apply():
    """Apply each fix the installed versions need; safe to call repeatedly."""
    global _applied
    if _applied:
        return
    _applied = True
    if checkpoints_need_safe_globals():
        allow_mmengine_checkpoints()
        APPLIED.append(f'torch {torch.__version__} safe loading allows the types of mmengine '
                       'checkpoints (numpy arrays/scalars, HistoryBuffer)')
    if config_bases_need_resolver():
        resolve_config_bases_with_metadata()
        APPLIED.append('mmengine resolves pkg:: config bases with importlib.metadata, not '
                       'pkg_resources')
    register_config_package()
    APPLIED.append(f'mmengine resolves {PACKAGE[0]}:: config bases (package {PACKAGE[1]})')
    check_transformers()


def log_applied(logger='current') -> None:
    """Log, once per process, what :func:`apply` changed (called when the first FocalNet is built,
    so the line lands in the run's log rather than on the console at import)."""
    global _logged
    if _logged:
        return
    _logged = True
    from mmengine.logging import print_log
    print_log('focalnet_mm.compat: ' + '; '.join(APPLIED), logger=logger)
