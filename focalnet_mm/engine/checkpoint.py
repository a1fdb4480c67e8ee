"""Checkpoints that survive a kill at any moment, and a resume that checks what it reads.

mmengine 0.10.7's CheckpointHook deletes the oldest kept checkpoint before writing the new one,
writes the new file in place and points ``last_checkpoint`` at it first; a job killed during the
write (what preemption does to a 560 MB Mask R-CNN checkpoint) leaves a truncated newest file and
no older one. Here every checkpoint write goes to a temporary file in the same folder, is flushed
to disk and renamed over the final name (``AtomicLocalBackend``), ``last_checkpoint`` is
replaced the same way only after that rename, and outdated checkpoints are removed only then
(``SafeCheckpointHook``). ``find_resumable_checkpoint`` and ``checkpoint_problem`` (the package's
one whole-checkpoint check, ``weights/integrity.py``) are what ``tools/train.py --resume`` uses
to skip a damaged file.
"""
import atexit
import os
import os.path as osp
import re
import signal
import sys
import threading
import time
from functools import partial
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_reduce, get_rank, get_world_size, is_main_process
from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook

from ..weights.integrity import checkpoint_problem
from .distributed import end_rank
from .workers import end_workers

#: written into the work dir when training stopped on a signal (holds the checkpoint's path)
STOPPED_MARKER = 'stopped_by_signal'
#: checkpoint names that CheckpointHook and SafeCheckpointHook write, and resume may pick
CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def _fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(data: bytes, filepath: str) -> None:
    """Write ``data`` so that ``filepath`` is either the complete new file or untouched.

    Temporary file in the same folder (a rename is atomic only within one file system), flushed
    and fsynced, then ``os.replace``; a kill at any moment leaves at worst ``.<name>.tmp``.
    """
    folder = osp.dirname(osp.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(filepath)}.tmp')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose writes are atomic (see :func:`atomic_write`)."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, str(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), str(filepath))


# --------------------------------------------------------------------------------- reading back
def checkpoint_candidates(work_dir: str) -> List[str]:
    """Checkpoints in ``work_dir``, newest first: the one ``last_checkpoint`` names, then the
    ``epoch_N.pth`` / ``iter_N.pth`` files by modification time."""
    candidates = []
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named:
            candidates.append(named)
    if osp.isdir(work_dir):
        found = [osp.join(work_dir, name) for name in os.listdir(work_dir)
                 if CHECKPOINT_NAME.match(name)]
        found.sort(key=lambda p: (osp.getmtime(p), p), reverse=True)
        existing = [c for c in candidates if osp.exists(c)]
        candidates += [p for p in found if not any(osp.samefile(p, c) for c in existing)]
    return candidates


class NoResumableCheckpointError(FileNotFoundError):
    """Every checkpoint in a work dir is unreadable."""


def find_resumable_checkpoint(work_dir: str) -> Tuple[Optional[str], List[Tuple[str, str]]]:
    """The newest checkpoint of ``work_dir`` that reads back, and (path, reason) of those skipped.

    Returns (None, []) when the work dir holds no checkpoint (a fresh start); raises
    NoResumableCheckpointError naming every file tried when there are some and none is readable.
    """
    skipped = []
    for path in checkpoint_candidates(work_dir):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    if skipped:
        tried = '; '.join(f'{p} ({why})' for p, why in skipped)
        raise NoResumableCheckpointError(
            f'--resume: no readable checkpoint in {work_dir}: tried {tried}. Start without '
            '--resume (or with --resume CKPT from elsewhere) to train from scratch.')
    return None, skipped


# --------------------------------------------------------------------------------- the hook
class _IgnoreSignals:
    """DataLoader worker_init_fn wrapper: workers ignore the stop signals and leave the stop to
    the main process (torch's workers die on SIGTERM, which would fail the iteration in flight;
    a job scheduler signals every process of the job)."""

    def __init__(self, init_fn, signals: Sequence[int]):
        self.init_fn, self.signals = init_fn, tuple(signals)

    def __call__(self, worker_id):
        for signum in self.signals:
            signal.signal(signum, signal.SIG_IGN)
        if self.init_fn is not None:
            self.init_fn(worker_id)


class _StuckSignalWatch:
    """Ends the process when a SIGTERM's Python handler cannot run for ``grace_s`` seconds.

    Python runs signal handlers in the main thread between bytecodes; a main thread blocked in a
    collective operation (C++) waiting for a rank that never comes would take SIGTERM only at the
    process group timeout (900 s), and torchrun / slurm kill it after 30 s without a word. The C
    level handler writes each signal's number to ``signal.set_wakeup_fd`` even then: a thread
    reads it and, when the handler has not run ``grace_s`` later, calls ``on_stuck(signum,
    where)`` (``where``: the main thread's innermost calls), which ends the process.
    """

    def __init__(self, signals: Sequence[int], grace_s: float, on_stuck):
        self.signals, self.grace_s, self.on_stuck = set(signals), grace_s, on_stuck
        self.handled = 0  # signals whose Python handler ran (counted by the hook)
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._main = threading.main_thread().ident
        threading.Thread(target=self._watch, name='stuck-signal-watch', daemon=True).start()

    def _watch(self) -> None:
        seen = 0
        while True:
            try:
                data = os.read(self._read_fd, 64)
            except OSError:
                return
            if not data:  # closed by stop()
                os.close(self._read_fd)
                return
            for signum in data:
                if signum not in self.signals:
                    continue  # e.g. SIGCHLD, which the DataLoader handles in Python too
                seen += 1
                deadline = time.monotonic() + self.grace_s
                while self.handled < seen and time.monotonic() < deadline:
                    time.sleep(0.05)
                if self.handled < seen:
                    self.on_stuck(signum, self._main_thread_calls())

    def _main_thread_calls(self, at_most: int = 3) -> str:
        frame = sys._current_frames().get(self._main)
        names = []
        while frame is not None and len(names) < at_most:
            names.append(f'{frame.f_code.co_name} ({osp.basename(frame.f_code.co_filename)})')
            frame = frame.f_back
        return ' <- '.join(names) or 'C++ code'

    def stop(self) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._write_fd)  # ends the thread's read
        self.grace_s = float('inf')


class SafeCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook with atomic writes, and a checkpoint when the job is stopped.

    * Each checkpoint (and ``last_checkpoint``) is written to a temporary file and renamed, so the
      newest checkpoint is complete or absent; checkpoints beyond ``max_keep_ckpts`` are removed
      only after the new one is complete. (Writes are atomic for local folders; an object store's
      put already is.)
    * ``stop_signals`` (default SIGTERM, and SIGUSR1 that slurm's ``--signal=USR1@<seconds>``
      sends before the time limit): the signal only sets a flag; once the iteration in flight is
      done, every rank agrees to stop, the state at that iteration is saved as ``iter_<N>.pth``
      and training ends normally (exit status 0), leaving ``work_dir/stopped_by_signal`` for job
      scripts (tools/slurm_train.sh requeues the job when it finds it). ``--resume`` continues at
      that iteration with the same data order (see :class:`ResumableEpochBasedTrainLoop`). Such a
      stop checkpoint is removed once a later regular checkpoint is complete.
    * ``stuck_signal_s`` (distributed runs): when the SIGTERM handler cannot run for this many
      seconds, the main thread is blocked in a collective operation waiting for a rank that does
      not come; the rank then ends with one line, without a checkpoint, instead of at the process
      group timeout (see :class:`_StuckSignalWatch`; 0 switches this off).

    All other arguments are CheckpointHook's.
    """

    def __init__(self, *args, stop_signals: Sequence[str] = ('SIGTERM', 'SIGUSR1'),
                 stuck_signal_s: float = 20.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop_signals = [getattr(signal, name) if isinstance(name, str) else int(name)
                             for name in stop_signals]
        self.stuck_signal_s = stuck_signal_s
        self._watch = None
        self._received = None
        self._previous_handlers = {}
        self._saves = 0

    # -- writing ---------------------------------------------------------------------------
    def before_train(self, runner) -> None:
        out_dir = self.out_dir if self.out_dir is not None else runner.work_dir
        if self.backend_args is None and self.file_client_args is None and '://' not in str(out_dir):
            self.backend_args = dict(backend='atomic_local')
        super().before_train(runner)
        marker = osp.join(runner.work_dir, STOPPED_MARKER)
        if is_main_process() and osp.exists(marker):
            os.remove(marker)  # a new run started: the previous stop is handled
        if is_main_process() and osp.isdir(str(self.out_dir)):
            self._remove_partial_writes(runner)
        self._install_signal_handlers(runner)

    def _remove_partial_writes(self, runner) -> None:
        """Delete what a kill during a write left (``.<checkpoint>.tmp``, as large as a
        checkpoint): a stop checkpoint's name is never written again, so nothing else would."""
        for name in os.listdir(self.out_dir):
            if name.startswith('.') and name.endswith('.tmp') and (
                    CHECKPOINT_NAME.match(name[1:-4]) or name[1:-4] == 'last_checkpoint'):
                os.remove(osp.join(self.out_dir, name))
                runner.logger.info(f'Removed {name} in {self.out_dir}: an unfinished write of a '
                                   'killed run')

    def _remove(self, path: str) -> None:
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # deepspeed checkpoints are folders
            self.file_backend.rmtree(path)

    def _write(self, runner, filename: str, meta: dict) -> str:
        """Save the runner's state as ``filename``; point ``last_checkpoint`` at it once complete."""
        path = self.file_backend.join_path(self.out_dir, filename)
        self.last_ckpt = path
        runner.message_hub.update_info('last_ckpt', path)
        runner.save_checkpoint(self.out_dir, filename, self.file_client_args,
                               save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta,
                               by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        self._saves += 1
        if is_main_process():  # rank 0 writes the file (mmengine's save_checkpoint is master-only)
            atomic_write(str(path).encode(), osp.join(runner.work_dir, 'last_checkpoint'))
        return path

    def _save_checkpoint_with_step(self, runner, step, meta):
        outdated = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        superseded = runner.message_hub.get_info('stop_ckpt')
        runner.message_hub.update_info('stop_ckpt', None)
        path = self._write(runner, self.filename_tmpl.format(step), meta)
        if not is_main_process():
            return
        for old_step in outdated:  # only now that the new checkpoint is complete
            self._remove(self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old_step)))
        if superseded and superseded != path:
            self._remove(superseded)
            runner.logger.info(f'Removed {superseded} (a stop checkpoint; {path} is newer)')

    # -- stopping on a signal --------------------------------------------------------------
    def _install_signal_handlers(self, runner) -> None:
        if not self.stop_signals:
            return
        if threading.current_thread() is not threading.main_thread():
            runner.logger.warning('SafeCheckpointHook: training runs outside the main thread, so '
                                  'SIGTERM/SIGUSR1 cannot be caught; a stop will not save a checkpoint.')
            return
        for signum in self.stop_signals:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        if signal.SIGTERM in self.stop_signals and self.stuck_signal_s and get_world_size() > 1:
            self._watch = _StuckSignalWatch([signal.SIGTERM], self.stuck_signal_s,
                                            partial(self._on_stuck, runner))
        loader = runner.train_loop.dataloader
        if getattr(loader, 'num_workers', 0) and not isinstance(loader.worker_init_fn, _IgnoreSignals):
            loader.worker_init_fn = _IgnoreSignals(loader.worker_init_fn, self.stop_signals)
            atexit.register(end_workers, loader)  # also when training raises

    def _on_signal(self, signum, frame) -> None:
        self._received = signum  # acted on after the iteration in flight (see after_train_iter)
        if self._watch is not None and signum == signal.SIGTERM:
            self._watch.handled += 1

    def _on_stuck(self, runner, signum: int, where: str) -> None:
        """(In the watch thread) SIGTERM could not be handled: the main thread is blocked."""
        rank, world_size = get_rank(), get_world_size()
        who = f'rank {rank} of {world_size}: ' if world_size > 1 else ''
        end_rank(runner, f'error: {who}{signal.Signals(signum).name} received while the main '
                 f'thread has been blocked for {self.stuck_signal_s:g} s in {where} (a collective '
                 'operation waiting for a rank that does not come): stopped without saving. '
                 'Continue from the last complete checkpoint with --resume.', announce=False,
                 leave_group=False)

    def after_train(self, runner) -> None:
        super().after_train(runner)
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        end_workers(runner.train_loop.dataloader)

    def _stop_requested(self) -> bool:
        """Whether any rank received a stop signal (all ranks must stop at the same iteration)."""
        flag = torch.tensor([0 if self._received is None else int(self._received)])
        if get_world_size() > 1:
            all_reduce(flag, op='max')
        if flag.item() and self._received is None:
            self._received = int(flag.item())
        return bool(flag.item())

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        saves = self._saves
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if not self._previous_handlers or not self._stop_requested():
            return
        done = runner.iter + 1  # iterations completed, this one included
        if self._saves == saves:  # not just saved by the interval rule
            previous = runner.message_hub.get_info('stop_ckpt')
            filename = f'iter_{done}.pth'
            # recorded inside the checkpoint itself, so that a resumed run removes it later
            runner.message_hub.update_info('stop_ckpt',
                                           self.file_backend.join_path(self.out_dir, filename))
            path = self._write(runner, filename, dict(epoch=runner.epoch, iter=done))
            if previous and previous != path and is_main_process():
                self._remove(previous)
        else:
            path = self.last_ckpt
        runner.train_loop.stop_training = True
        if is_main_process():  # tools/slurm_train.sh requeues the job when it finds this file
            atomic_write(f'{path}\n'.encode(), osp.join(runner.work_dir, STOPPED_MARKER))
        name = signal.Signals(self._received).name
        per_epoch = len(runner.train_loop.dataloader)
        where = (f'epoch {runner.epoch + 1}, iteration {done - runner.epoch * per_epoch}/{per_epoch}'
                 if self.by_epoch else f'iteration {done}')
        config = runner.cfg.filename or 'CONFIG'
        runner.logger.info(
            f'{name} received: stopped after {where} and saved {path}. Continue with: python '
            f'tools/train.py {config} --work-dir {runner.work_dir} --resume (or the same '
            'dist_train.sh/slurm_train.sh command with --resume)')
