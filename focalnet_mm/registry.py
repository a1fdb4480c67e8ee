"""The one place where focalnet-mm adds itself to OpenMMLab registries.

``FocalNet`` goes into the MODELS registry of every installed library (mmdet, mmseg, mmpretrain);
the training-time visualization hook, the preemption-safe checkpoint hook and the non-finite loss
hook into mmengine's HOOKS and theirs, the resumable epoch loop into LOOPS, the FSDP and
non-finite-guarded optimizer wrappers into OPTIM_WRAPPERS, the bad-sample skipping wrapper into
DATASETS, the warm-up that fits any run into PARAM_SCHEDULERS.
A library that is not
installed is skipped; one that is installed but fails to import is an error worth seeing.
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
OPTIM_WRAPPER_REGISTERED_IN = register(FSDPOptimWrapper, 'FSDPOptimWrapper', 'OPTIM_WRAPPERS',
                                       include_mmengine=True)
for _wrapper in (FiniteOptimWrapper, FiniteAmpOptimWrapper, FiniteFSDPOptimWrapper):
    register(_wrapper, _wrapper.__name__, 'OPTIM_WRAPPERS', include_mmengine=True)
register(NonFiniteLossHook, 'NonFiniteLossHook', 'HOOKS', include_mmengine=True)
register(SkipBadSamples, 'SkipBadSamples', 'DATASETS', include_mmengine=True)
register(CheckSegMapSize, 'CheckSegMapSize', 'TRANSFORMS', include_mmengine=True)
register(LinearWarmupLR, 'LinearWarmupLR', 'PARAM_SCHEDULERS', include_mmengine=True)
