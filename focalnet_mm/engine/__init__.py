"""Training machinery on top of mmengine: preemption-safe checkpoints, mid-epoch resume, a clear
message when a distributed rank dies, and gradient clipping that means the same under FSDP (see
docs/training.md "Training and testing")."""
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
from .optim import FSDPOptimWrapper
from .training import make_training_safe

__all__ = ['AtomicLocalBackend', 'NoResumableCheckpointError', 'SafeCheckpointHook', 'atomic_write',
           'checkpoint_problem', 'find_resumable_checkpoint', 'DEFAULT_DIST_TIMEOUT',
           'lost_rank_message', 'ResumableEpochBasedTrainLoop', 'FSDPOptimWrapper', 'make_training_safe']
