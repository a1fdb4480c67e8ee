"""The one place where focalnet-mm adds itself to OpenMMLab registries.

Each type is added to mmengine's registry (where the configs' types are looked up when the
library's own registry lacks them) and to those of every installed library (mmdet, mmseg,
mmpretrain); docs/architecture.md says why each exists:

- MODELS: ``FocalNet`` (not in mmengine's: only the libraries build backbones);
- HOOKS: ``FocalModulationVisHook``, ``SafeCheckpointHook``, ``NonFiniteLossHook``;
- LOOPS: ``ResumableEpochBasedTrainLoop``;
- OPTIM_WRAPPERS: ``FSDPOptimWrapper`` and the guarded ``FiniteOptimWrapper``,
  ``FiniteAmpOptimWrapper``, ``FiniteFSDPOptimWrapper``;
- DATASETS: ``SkipBadSamples``; TRANSFORMS: ``CheckSegMapSize``;
- RUNNERS: ``SkipBadSamplesRunner``, ``SkipBadSamplesFlexibleRunner``;
- PARAM_SCHEDULERS: ``LinearWarmupLR`` (a warm-up that fits any run).

A library that is not installed is skipped; one that is installed but fails to import is an
error worth seeing.
"""
import importlib
import importlib.util
from typing import List

from mmengine import registry as mmengine_registry

from .engine import (
    CheckSegMapSize,
    FiniteAmpOptimWrapper,
    FiniteFSDPOptimWrapper,
    FiniteOptimWrapper,
    FSDPOptimWrapper,
    LinearWarmupLR,
    NonFiniteLossHook,
    ResumableEpochBasedTrainLoop,
    SafeCheckpointHook,
    SkipBadSamples,
    SkipBadSamplesFlexibleRunner,
    SkipBadSamplesRunner,
)
from .models import FocalNet
from .visualization.hook import FocalModulationVisHook

#: library -> module holding its registries
LIBRARIES = {'mmdet': 'mmdet.registry', 'mmseg': 'mmseg.registry', 'mmpretrain': 'mmpretrain.registry'}


def register(module, name: str, registry: str, include_mmengine: bool = False) -> List[str]:
    """Add ``module`` as ``name`` to ``registry`` (e.g. 'MODELS') of each installed library."""
    targets = [('mmengine', getattr(mmengine_registry, registry))] if include_mmengine else []
    for library, registry_module in LIBRARIES.items():
        if importlib.util.find_spec(library) is None:
            continue
        try:
            targets.append((library, getattr(importlib.import_module(registry_module), registry)))
        except Exception as e:  # an installed but broken library must not pass silently
            raise ImportError(f'{library} is installed but {registry_module} failed to import ({e}); '
                              'run "bash tools/setup_env.sh" to repair the environment.') from e
    for _, target in targets:
        if target.module_dict.get(name) is not module:
            target.register_module(name=name, module=module, force=True)
    return [library for library, _ in targets]


REGISTERED_IN = register(FocalNet, 'FocalNet', 'MODELS')
HOOK_REGISTERED_IN = register(FocalModulationVisHook, 'FocalModulationVisHook', 'HOOKS',
                              include_mmengine=True)
register(SafeCheckpointHook, 'SafeCheckpointHook', 'HOOKS', include_mmengine=True)
register(ResumableEpochBasedTrainLoop, 'ResumableEpochBasedTrainLoop', 'LOOPS', include_mmengine=True)
for _wrapper in (FSDPOptimWrapper, FiniteOptimWrapper, FiniteAmpOptimWrapper, FiniteFSDPOptimWrapper):
    register(_wrapper, _wrapper.__name__, 'OPTIM_WRAPPERS', include_mmengine=True)
register(NonFiniteLossHook, 'NonFiniteLossHook', 'HOOKS', include_mmengine=True)
register(SkipBadSamples, 'SkipBadSamples', 'DATASETS', include_mmengine=True)
register(CheckSegMapSize, 'CheckSegMapSize', 'TRANSFORMS', include_mmengine=True)
for _runner in (SkipBadSamplesRunner, SkipBadSamplesFlexibleRunner):
    register(_runner, _runner.__name__, 'RUNNERS', include_mmengine=True)
register(LinearWarmupLR, 'LinearWarmupLR', 'PARAM_SCHEDULERS', include_mmengine=True)
