"""Training machinery on top of mmengine: preemption-safe checkpoints, mid-epoch resume, a clear
message when a distributed rank dies, gradient clipping that means the same under FSDP, broken
samples skipped and named, a stop at a non-finite loss, and a warm-up that fits any run (see
docs/training.md "Training and testing"). The types a config names
(configs/_base_/safe_training.py) are registered by :mod:`focalnet_mm.registry`."""
from .bad_samples import CheckSegMapSize, SkipBadSamples, TooManyBadSamplesError, wrap_datasets
from .checkpoint import (
    AtomicLocalBackend,
    NoResumableCheckpointError,
    SafeCheckpointHook,
    atomic_write,
    checkpoint_problem,
    find_resumable_checkpoint,
)
from .distributed import DEFAULT_DIST_TIMEOUT, lost_rank_message
from .loops import ResumableEpochBasedTrainLoop
from .nonfinite import (
    FiniteAmpOptimWrapper,
    FiniteFSDPOptimWrapper,
    FiniteOptimWrapper,
    NonFiniteLossError,
    NonFiniteLossHook,
)
from .optim import FSDPOptimWrapper
from .runners import SkipBadSamplesFlexibleRunner, SkipBadSamplesRunner
from .warmup import LinearWarmupLR

__all__ = ['AtomicLocalBackend', 'NoResumableCheckpointError', 'SafeCheckpointHook', 'atomic_write',
           'checkpoint_problem', 'find_resumable_checkpoint', 'DEFAULT_DIST_TIMEOUT',
           'lost_rank_message', 'ResumableEpochBasedTrainLoop', 'FSDPOptimWrapper', 'SkipBadSamplesRunner',
           'SkipBadSamplesFlexibleRunner',
           'CheckSegMapSize', 'SkipBadSamples', 'TooManyBadSamplesError', 'wrap_datasets',
           'FiniteOptimWrapper', 'FiniteAmpOptimWrapper', 'FiniteFSDPOptimWrapper', 'NonFiniteLossError',
           'NonFiniteLossHook', 'LinearWarmupLR']
