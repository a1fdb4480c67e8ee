"""What tools/train.py applies to every config: preemption-safe checkpoints and resume, and a
stop (or a dropped batch) at a non-finite loss before it reaches the weights.

Done in the tool rather than in each config so that every config trains the same way, ours, the
upstream mmdet/mmseg/mmpretrain ones and a user's own, while each config stays a small diff of
its official recipe (and still runs unchanged under mmdet's own tools).
"""
import os
from typing import Optional

from mmengine.config import Config
from mmengine.logging import print_log

from .checkpoint import checkpoint_problem, find_resumable_checkpoint
from .distributed import DEFAULT_DIST_TIMEOUT
from .nonfinite import DEFAULT_NONFINITE, GUARDED_TYPES

#: mmengine types replaced by their preemption-safe subclasses (same arguments)
SAFE_TYPES = {'CheckpointHook': 'SafeCheckpointHook',
              'EpochBasedTrainLoop': 'ResumableEpochBasedTrainLoop'}


def _safe_type(type_name):
    """The safe subclass for mmengine's own type (a name or, in pure-Python configs, the class)."""
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import EpochBasedTrainLoop

    from .checkpoint import SafeCheckpointHook
    from .loops import ResumableEpochBasedTrainLoop
    if type_name is CheckpointHook:
        return SafeCheckpointHook
    if type_name is EpochBasedTrainLoop:
        return ResumableEpochBasedTrainLoop
    if isinstance(type_name, str):
        scope, dot, name = type_name.rpartition('.')
        if name in SAFE_TYPES:  # the OpenMMLab libraries take both from mmengine's registry
            return scope + dot + SAFE_TYPES[name]
    return type_name


def _log_once(message: str, level: str = 'WARNING') -> None:
    """Print on the first process only (tools run before the process group exists)."""
    if os.environ.get('RANK', '0') == '0':
        import logging
        print_log(message, logger='current', level=getattr(logging, level))


def guard_nonfinite_loss(cfg: Config) -> None:
    """Swap in the optimizer wrapper that skips a non-finite loss and add NonFiniteLossHook.

    ``cfg.nonfinite_loss``: dict(mode='stop' | 'drop', max_dropped=10, max_amp_overflows=20)
    (missing keys from :data:`DEFAULT_NONFINITE`), or None to train without the guard.
    """
    setting = cfg.get('nonfinite_loss', {})
    if setting is None:
        return
    unknown = set(setting) - set(DEFAULT_NONFINITE)
    if unknown:
        raise ValueError(f'nonfinite_loss has unknown keys {sorted(unknown)}; it takes '
                         f'{sorted(DEFAULT_NONFINITE)} (or nonfinite_loss=None to switch it off)')
    optim_wrapper = cfg.get('optim_wrapper')
    if not isinstance(optim_wrapper, dict):
        return
    if any(isinstance(v, dict) and 'optimizer' in v for v in optim_wrapper.values()):
        return  # an OptimWrapperDict (one wrapper per model part): not guarded
    kind = optim_wrapper.get('type', 'OptimWrapper')
    if not isinstance(kind, str):  # pure-Python configs name the class itself
        kind = kind.__name__
    scope, dot, name = kind.rpartition('.')
    if name not in GUARDED_TYPES and name not in GUARDED_TYPES.values():
        raise ValueError(f'optim_wrapper.type={kind} has no non-finite loss guard (one of '
                         f'{", ".join(GUARDED_TYPES)}); set nonfinite_loss=None to train without it')
    optim_wrapper['type'] = scope + dot + GUARDED_TYPES.get(name, name)
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(isinstance(h, dict) and h.get('type') == 'NonFiniteLossHook' for h in hooks):
        hooks.append(dict(type='NonFiniteLossHook', **dict(DEFAULT_NONFINITE, **setting)))
    cfg.custom_hooks = hooks


def make_training_safe(cfg: Config, resume: Optional[str] = None) -> None:
    """Swap in SafeCheckpointHook / ResumableEpochBasedTrainLoop and the non-finite loss guard,
    give distributed runs a timeout, and turn ``--resume [CKPT]`` into a checked ``cfg.load_from``.

    ``resume``: None (no resume), 'auto' (the newest readable checkpoint of the work dir; a fresh
    start when it holds none) or a path. Raises FileNotFoundError/ValueError with one line.
    """
    hooks = cfg.setdefault('default_hooks', {})
    checkpoint = hooks.get('checkpoint', dict(type='CheckpointHook', interval=1))
    if checkpoint is not None:  # None: the config switched checkpoints off
        checkpoint['type'] = _safe_type(checkpoint.get('type'))
        hooks['checkpoint'] = checkpoint
    train_cfg = cfg.get('train_cfg')
    if train_cfg:
        if 'type' not in train_cfg and train_cfg.get('by_epoch'):
            train_cfg.pop('by_epoch')
            train_cfg['type'] = 'EpochBasedTrainLoop'
        if 'type' in train_cfg:
            train_cfg['type'] = _safe_type(train_cfg['type'])
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    dist_cfg.setdefault('timeout', DEFAULT_DIST_TIMEOUT)
    guard_nonfinite_loss(cfg)

    if resume is None:
        return
    cfg.resume = True
    if resume == 'auto':
        path, skipped = find_resumable_checkpoint(cfg.work_dir)
        for bad, why in skipped:
            _log_once(f'--resume: skipping {bad}, which cannot be read back ({why})')
        if path is None:
            _log_once(f'--resume: no checkpoint in {cfg.work_dir} yet; training from the start', 'INFO')
        cfg.load_from = path
        return
    if not os.path.isfile(resume):
        raise FileNotFoundError(f'--resume {resume}: no such checkpoint file')
    problem = checkpoint_problem(resume)
    if problem is not None:
        try:
            alternative, _ = find_resumable_checkpoint(os.path.dirname(os.path.abspath(resume)))
        except FileNotFoundError:
            alternative = None
        hint = (f'the newest readable one next to it is {alternative}' if alternative
                else 'no readable checkpoint is next to it')
        raise ValueError(f'--resume {resume} cannot be read back ({problem}); {hint}')
    cfg.load_from = resume
