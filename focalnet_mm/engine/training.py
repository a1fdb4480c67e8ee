"""What tools/train.py applies to every config: preemption-safe checkpoints and resume.

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


def make_training_safe(cfg: Config, resume: Optional[str] = None) -> None:
    """Swap in SafeCheckpointHook / ResumableEpochBasedTrainLoop, give distributed runs a
    timeout, and turn ``--resume [CKPT]`` into a checked ``cfg.load_from``.

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
