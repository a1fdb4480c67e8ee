"""A foreign config given what ``configs/_base_/safe_training.py`` names, listed in one log block.

The project's configs name the safe types themselves (the fragment and four lines in each root
config), so mmdet's, mmseg's and mmpretrain's own tools run what ours run. A config that lacks
them (an upstream mmdet/mmseg/mmpretrain config, a user's own) gets them here, from
``tools/train.py`` and ``tools/test.py``, with one WARNING block naming each substitution:

- ``default_hooks.checkpoint``: CheckpointHook -> SafeCheckpointHook (atomic, a checkpoint on
  SIGTERM/SIGUSR1);
- ``train_cfg``: EpochBasedTrainLoop -> ResumableEpochBasedTrainLoop (mid-epoch stop and resume);
- ``optim_wrapper``: -> its Finite* variant, and NonFiniteLossHook in ``custom_hooks`` (a
  non-finite loss never reaches the weights); ``nonfinite_loss = dict(...)`` sets the hook's
  arguments, ``nonfinite_loss = None`` takes the guard away;
- ``runner_type``: Runner/FlexibleRunner -> the SkipBadSamples runner (every data set in
  SkipBadSamples; ``skip_bad_samples = None`` leaves them as they are).

Also here: a process-group timeout for configs without one, and ``--resume [CKPT]`` turned into a
checked ``cfg.load_from``.
"""
import logging
import os
from typing import List, Optional

from mmengine.config import Config
from mmengine.logging import print_log

from ..engine.checkpoint import checkpoint_problem, find_resumable_checkpoint
from ..engine.distributed import DEFAULT_DIST_TIMEOUT
from ..engine.nonfinite import DEFAULT_NONFINITE, GUARDED_TYPES
from ..engine.runners import WRAPPING_RUNNERS

#: mmengine types replaced by their preemption-safe subclasses (same arguments)
SAFE_TYPES = {'CheckpointHook': 'SafeCheckpointHook',
              'EpochBasedTrainLoop': 'ResumableEpochBasedTrainLoop'}
FRAGMENT = 'focalnet_mm::_base_/safe_training.py'


def _type_name(kind) -> str:
    """A config's type as text (pure-Python configs name the class itself)."""
    return kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))


def _safe_type(kind):
    """The safe subclass for mmengine's own type (a name, possibly scoped, or the class)."""
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import EpochBasedTrainLoop

    from ..engine.checkpoint import SafeCheckpointHook
    from ..engine.loops import ResumableEpochBasedTrainLoop
    if kind is CheckpointHook:
        return SafeCheckpointHook
    if kind is EpochBasedTrainLoop:
        return ResumableEpochBasedTrainLoop
    if isinstance(kind, str):
        scope, dot, name = kind.rpartition('.')
        if name in SAFE_TYPES:  # the OpenMMLab libraries take both from mmengine's registry
            return scope + dot + SAFE_TYPES[name]
    return kind


def _log_on_first_rank(message: str, level: int = logging.WARNING) -> None:
    """Print on the first process only (tools run before the process group exists)."""
    if os.environ.get('RANK', '0') == '0':
        print_log(message, logger='current', level=level)


def _is_nonfinite_hook(hook) -> bool:
    return isinstance(hook, dict) and _type_name(hook.get('type')).rpartition('.')[2] == 'NonFiniteLossHook'


def guard_nonfinite_loss(cfg: Config) -> List[str]:
    """The optimizer wrapper that skips a non-finite loss and NonFiniteLossHook, as the config's
    ``nonfinite_loss`` says; returns one line per change.

    ``cfg.nonfinite_loss``: absent (the guard, with the hook's arguments as the config names them,
    else :data:`DEFAULT_NONFINITE`), a dict (mode='stop' | 'drop', max_dropped, max_amp_overflows:
    set on the hook), or None (no guard).
    """
    setting = cfg.get('nonfinite_loss', {})
    if setting is not None:
        unknown = set(setting) - set(DEFAULT_NONFINITE)
        if unknown:
            raise ValueError(f'nonfinite_loss has unknown keys {sorted(unknown)}; it takes '
                             f'{sorted(DEFAULT_NONFINITE)} (or nonfinite_loss=None to switch it off)')
    optim_wrapper = cfg.get('optim_wrapper')
    if not isinstance(optim_wrapper, dict):
        return []
    if any(isinstance(v, dict) and 'optimizer' in v for v in optim_wrapper.values()):
        return []  # an OptimWrapperDict (one wrapper per model part): not guarded
    hooks = list(cfg.get('custom_hooks') or [])
    kind = _type_name(optim_wrapper.get('type', 'OptimWrapper'))
    scope, dot, name = kind.rpartition('.')
    changes = []
    if setting is None:  # the guard off: the plain wrapper, no hook
        plain = {guarded: unguarded for unguarded, guarded in GUARDED_TYPES.items()}
        if name in plain:
            optim_wrapper['type'] = scope + dot + plain[name]
            changes.append(f'optim_wrapper.type: {kind} -> {optim_wrapper["type"]} (nonfinite_loss=None)')
        if any(_is_nonfinite_hook(h) for h in hooks):
            cfg.custom_hooks = [h for h in hooks if not _is_nonfinite_hook(h)]
            changes.append('custom_hooks: - NonFiniteLossHook (nonfinite_loss=None)')
        return changes
    if name not in GUARDED_TYPES and name not in GUARDED_TYPES.values():
        raise ValueError(f'optim_wrapper.type={kind} has no non-finite loss guard (one of '
                         f'{", ".join(GUARDED_TYPES)}); set nonfinite_loss=None to train without it')
    if name in GUARDED_TYPES:
        optim_wrapper['type'] = scope + dot + GUARDED_TYPES[name]
        changes.append(f'optim_wrapper.type: {kind} -> {optim_wrapper["type"]}')
    named = [h for h in hooks if _is_nonfinite_hook(h)]
    if not named:
        hook = dict(type='NonFiniteLossHook', **dict(DEFAULT_NONFINITE, **setting))
        hooks.append(hook)
        arguments = ', '.join(f'{k}={v!r}' for k, v in hook.items() if k != 'type')
        changes.append(f'custom_hooks: + NonFiniteLossHook({arguments})')
    for hook in named:
        for key, value in setting.items():
            if hook.get(key, DEFAULT_NONFINITE[key]) != value:
                hook[key] = value
                changes.append(f'custom_hooks: NonFiniteLossHook {key}={value!r} (nonfinite_loss.{key})')
    cfg.custom_hooks = hooks
    return changes


def wrap_datasets_by_runner(cfg: Config) -> List[str]:
    """Name the runner that wraps every data set in SkipBadSamples, unless the config names one
    or ``skip_bad_samples`` is None; returns the line for the log block (or none)."""
    if cfg.get('skip_bad_samples', {}) is None:
        return []
    current = cfg.get('runner_type') or ('FlexibleRunner' if cfg.get('strategy') else 'Runner')
    current = _type_name(current)
    if current in WRAPPING_RUNNERS.values():
        return []
    if current not in WRAPPING_RUNNERS:
        raise ValueError(f'runner_type={current} cannot wrap the data sets in SkipBadSamples '
                         f'(one of {", ".join(WRAPPING_RUNNERS)} can); set skip_bad_samples=None '
                         'to run without it')
    cfg.runner_type = WRAPPING_RUNNERS[current]
    return [f'runner_type: {current} -> {cfg.runner_type} (every data set in SkipBadSamples)']


def log_substitutions(changes: List[str]) -> None:
    """The one log block that lists what a tool added to the config."""
    if changes:
        _log_on_first_rank(f'The config lacks what {FRAGMENT} names; added for this run:\n  '
                  + '\n  '.join(changes)
                  + f'\nInherit {FRAGMENT} (docs/training.md "Safe training") to name them in the config.')


def add_safe_types(cfg: Config) -> List[str]:
    """Give a config for training what :data:`FRAGMENT` and the project's root configs name and it
    lacks; returns one line per substitution (not logged, see :func:`log_substitutions`)."""
    changes = []
    hooks = cfg.setdefault('default_hooks', {})
    checkpoint = hooks.get('checkpoint', dict(type='CheckpointHook', interval=1))
    if checkpoint is not None:  # None: the config switched checkpoints off
        kind = checkpoint.get('type')
        checkpoint['type'] = _safe_type(kind)
        if checkpoint['type'] is not kind or 'checkpoint' not in hooks:
            changes.append(f'default_hooks.checkpoint.type: {_type_name(kind)} -> '
                           f'{_type_name(checkpoint["type"])}')
        hooks['checkpoint'] = checkpoint
    train_cfg = cfg.get('train_cfg')
    if train_cfg:
        if 'type' not in train_cfg and train_cfg.get('by_epoch'):
            train_cfg.pop('by_epoch')
            train_cfg['type'] = 'EpochBasedTrainLoop'
        if 'type' in train_cfg:
            kind = train_cfg['type']
            train_cfg['type'] = _safe_type(kind)
            if train_cfg['type'] is not kind:
                changes.append(f'train_cfg.type: {_type_name(kind)} -> {_type_name(train_cfg["type"])}')
    changes += guard_nonfinite_loss(cfg)
    changes += wrap_datasets_by_runner(cfg)
    return changes


def make_training_safe(cfg: Config, resume: Optional[str] = None) -> List[str]:
    """:func:`add_safe_types` (logged in one block), a distributed timeout, and ``--resume [CKPT]``
    as a checked ``cfg.load_from``; returns the substitutions.

    ``resume``: None (no resume), 'auto' (the newest readable checkpoint of the work dir; a fresh
    start when it holds none) or a path. Raises FileNotFoundError/ValueError with one line.
    """
    changes = add_safe_types(cfg)
    log_substitutions(changes)
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    dist_cfg.setdefault('timeout', DEFAULT_DIST_TIMEOUT)
    if resume is not None:
        _resolve_resume(cfg, resume)
    return changes


def _resolve_resume(cfg: Config, resume: str) -> None:
    cfg.resume = True
    if resume == 'auto':
        path, skipped = find_resumable_checkpoint(cfg.work_dir)
        for bad, why in skipped:
            _log_on_first_rank(f'--resume: skipping {bad}, which cannot be read back ({why})')
        if path is None:
            _log_on_first_rank(f'--resume: no checkpoint in {cfg.work_dir} yet; training from the start',
                               logging.INFO)
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
