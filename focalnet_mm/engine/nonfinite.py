"""A non-finite loss stops training before it reaches the weights.

mmengine back-propagates and steps whatever the loss is: one NaN total loss in fp32 makes every
weight NaN, and every checkpoint after it is worthless. Two pieces, because no hook runs between
the loss and the optimizer step:

- the optimizer wrappers here (``OptimWrapper``, ``AmpOptimWrapper`` and ``FSDPOptimWrapper``
  with :class:`FiniteLossGuard` mixed in; the configs name them, see
  :data:`GUARDED_TYPES`) leave the weights untouched when the total loss is not finite on any
  rank (no backward, no step; all ranks agree, so DDP never waits for a missing backward). Under
  AMP the loss scaler already skips an overflowing step; the wrapper counts such skips in a row.
- :class:`NonFiniteLossHook`, first in ``after_train_iter`` (before the scheduler and checkpoint
  hooks), sees the iteration's loss terms and batch: it stops the run naming the iteration, the
  non-finite terms and the batch's files, so the newest checkpoint is still the last good one
  that ``--resume`` continues from; or, with ``mode='drop'``, logs the dropped batch and goes on
  (at most ``max_dropped`` times).
"""
import logging
from contextlib import contextmanager
from typing import List

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from .optim import FSDPOptimWrapper

#: the configs' default (``nonfinite_loss`` in a config, ``--cfg-options nonfinite_loss.mode=drop``)
DEFAULT_NONFINITE = dict(mode='stop', max_dropped=10, max_amp_overflows=20)


class NonFiniteLossError(RuntimeError):
    """Training stopped at a non-finite loss, before the weights were updated with it."""


class FiniteLossGuard:
    """Mixin for an mmengine optimizer wrapper: no backward and no step for a non-finite loss.

    ``nonfinite_iteration``: the last update was skipped for a non-finite loss (read and reset
    by :class:`NonFiniteLossHook`); ``amp_overflows_in_a_row``: AMP steps skipped by the loss
    scaler in a row.
    """

    nonfinite_iteration = False
    amp_overflows_in_a_row = 0
    #: set by NonFiniteLossHook in mode='drop': buffers (BatchNorm statistics) that a dropped
    #: batch's forward pass changed are put back, as its step never happens
    keep_buffers = False
    _buffers = None

    @contextmanager
    def optim_context(self, model):
        if self.keep_buffers:
            self._buffers = [(b, b.detach().clone()) for b in model.buffers() if b.is_floating_point()]
        with super().optim_context(model):
            yield

    def update_params(self, loss, step_kwargs=None, zero_kwargs=None) -> None:
        if isinstance(self, AmpOptimWrapper):  # overflow is the loss scaler's business
            return super().update_params(loss, step_kwargs, zero_kwargs)
        finite = torch.isfinite(loss.detach()).all().to(torch.float32).reshape(1)
        if get_world_size() > 1:
            all_reduce(finite, op='min')  # every rank skips, or none: DDP waits for all backwards
        if not bool(finite.item()):
            self.nonfinite_iteration = True
            self.zero_grad(**(zero_kwargs or {}))
            with torch.no_grad():
                for buffer, saved in self._buffers or ():
                    buffer.copy_(saved)
            return
        super().update_params(loss, step_kwargs, zero_kwargs)

    def step(self, **kwargs) -> None:
        if not isinstance(self, AmpOptimWrapper):
            return super().step(**kwargs)
        before = self.loss_scaler.get_scale()
        super().step(**kwargs)
        # the dynamic loss scaler (--amp's) lowers its scale exactly when it skipped the step for
        # inf/NaN; a static loss_scale keeps it, so its skipped steps are not counted
        skipped = self.loss_scaler.get_scale() < before
        self.amp_overflows_in_a_row = self.amp_overflows_in_a_row + 1 if skipped else 0


class FiniteOptimWrapper(FiniteLossGuard, OptimWrapper):
    """mmengine's OptimWrapper that does not step on a non-finite loss."""


class FiniteAmpOptimWrapper(FiniteLossGuard, AmpOptimWrapper):
    """mmengine's AmpOptimWrapper that counts the steps its loss scaler skips in a row."""


class FiniteFSDPOptimWrapper(FiniteLossGuard, FSDPOptimWrapper):
    """:class:`FSDPOptimWrapper` that does not step on a non-finite loss."""


#: wrapper type (mmengine's default 'OptimWrapper' when a config names none) -> guarded type
GUARDED_TYPES = {'OptimWrapper': 'FiniteOptimWrapper', 'AmpOptimWrapper': 'FiniteAmpOptimWrapper',
                 'FSDPOptimWrapper': 'FiniteFSDPOptimWrapper'}


def _not_finite(value) -> bool:
    return not bool(torch.isfinite(torch.as_tensor(value, dtype=torch.float64)).all())


def batch_files(data_batch, at_most: int = 8) -> List[str]:
    """The image files of a collated batch (det, seg and cls data samples carry ``img_path``)."""
    samples = data_batch.get('data_samples', []) if isinstance(data_batch, dict) else []
    files = [str(s.metainfo.get('img_path')) for s in samples
             if hasattr(s, 'metainfo') and s.metainfo.get('img_path')]
    return files[:at_most] + ([f'... ({len(files) - at_most} more)'] if len(files) > at_most else [])


class NonFiniteLossHook(Hook):
    """Stop (``mode='stop'``) or drop the batch and go on (``mode='drop'``, at most
    ``max_dropped`` batches) when the total loss is not finite; stop after
    ``max_amp_overflows`` AMP steps in a row skipped by the loss scaler.

    Needs a guarded optimizer wrapper (:data:`GUARDED_TYPES`), which left the weights alone.
    """

    priority = 'HIGHEST'  # before the scheduler steps and the checkpoint hook saves

    def __init__(self, mode: str = 'stop', max_dropped: int = 10, max_amp_overflows: int = 20):
        if mode not in ('stop', 'drop'):
            raise ValueError(f"nonfinite_loss.mode must be 'stop' or 'drop', got {mode!r}")
        self.mode, self.max_dropped, self.max_amp_overflows = mode, int(max_dropped), int(max_amp_overflows)
        self.dropped = 0

    def before_train(self, runner) -> None:
        wrapper = runner.optim_wrapper
        if not isinstance(wrapper, FiniteLossGuard):
            raise TypeError(f'NonFiniteLossHook needs an optimizer wrapper that skips non-finite '
                            f'losses ({", ".join(GUARDED_TYPES.values())}), got '
                            f'{type(wrapper).__name__}: set nonfinite_loss=None to train without it')
        wrapper.keep_buffers = self.mode == 'drop'

    def _where(self, runner) -> str:
        done = runner.iter + 1
        loop = runner.train_loop
        if hasattr(loop, 'max_epochs'):
            per_epoch = len(loop.dataloader)
            return (f'iteration {done} (epoch {runner.epoch + 1}, '
                    f'{done - runner.epoch * per_epoch}/{per_epoch})')
        return f'iteration {done}'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        wrapper = runner.optim_wrapper
        last = runner.message_hub.get_info('last_ckpt')
        resume = (f'the newest checkpoint, {last}, is the last good one (--resume continues from it)'
                  if last else 'no checkpoint was written yet')
        if wrapper.amp_overflows_in_a_row >= self.max_amp_overflows:
            raise NonFiniteLossError(
                f'{wrapper.amp_overflows_in_a_row} AMP steps in a row skipped for inf/NaN '
                f'gradients up to {self._where(runner)} (nonfinite_loss.max_amp_overflows='
                f'{self.max_amp_overflows}); last batch: {", ".join(batch_files(data_batch))}. '
                f'Training stopped; {resume}. Lower the learning rate or clip gradients '
                '(optim_wrapper.clip_grad=dict(max_norm=...)), or train in fp32 (without --amp)')
        if not wrapper.nonfinite_iteration:
            return
        wrapper.nonfinite_iteration = False
        outputs = outputs if isinstance(outputs, dict) else {}
        terms = [f'{k}={float(torch.as_tensor(v).float().mean()):g}' for k, v in outputs.items()
                 if _not_finite(v)]
        what = (f'non-finite loss at {self._where(runner)} ({", ".join(terms) or "total loss"}), '
                f'batch: {", ".join(batch_files(data_batch)) or "?"}')
        if self.mode == 'drop' and self.dropped < self.max_dropped:
            self.dropped += 1
            for key in [k for k, v in outputs.items() if _not_finite(v)]:
                outputs.pop(key)  # keeps the logged running means finite
            print_log(f'{what}: batch dropped, weights not updated ({self.dropped} of at most '
                      f'{self.max_dropped} dropped)', logger='current', level=logging.WARNING)
            return
        limit = (f'; {self.dropped} batches were dropped already (nonfinite_loss.max_dropped='
                 f'{self.max_dropped})' if self.mode == 'drop' else '')
        raise NonFiniteLossError(
            f'{what}: training stopped before the weights were updated{limit}; {resume}. Lower '
            'the learning rate or clip gradients (optim_wrapper.clip_grad=dict(max_norm=...)), '
            'check these images, or skip such batches with --cfg-options nonfinite_loss.mode=drop')
