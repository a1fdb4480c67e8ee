"""A stop on one rank ends every rank within seconds, each with one line.

A rank that stops (a bad-sample or non-finite-loss stop, an error, a DataLoader worker that
died) ends its DataLoader workers, writes its line into the process group's key-value store,
leaves the process group and exits non-zero at once (:func:`end_rank`): its connections close,
so its peers' next collective fails at once instead of waiting for the process group timeout, and
each peer prints the stopping rank's line (:func:`lost_rank_message`). The store lives in
torchrun's agent (``tools/dist_train.sh``); under launchers where it lives in rank 0, a stop on
rank 0 takes it along, and the peers say that rank 0 is unreachable. When a rank died without a line (killed),
its peers fail in their next collective: at once when its sockets close (gloo: "Connection reset
by peer"), or after the process group timeout (``env_cfg.dist_cfg.timeout``) when it stops
answering; each surviving rank then announces itself in the store and waits a few seconds for the
others, and the ranks that never answer are the ones named.
"""
import logging
import os
import re
import sys
import time
import traceback
from typing import Dict, List, Optional

import torch.distributed as torch_dist

from .workers import end_run_workers

#: default process group timeout (seconds) that tools/train.py sets when a config has none:
#: long enough for rank 0 to write a checkpoint or finish COCO evaluation while the others wait
DEFAULT_DIST_TIMEOUT = 900

_COMMUNICATION_HINTS = ('gloo', 'nccl', 'connection reset', 'connection closed', 'timed out',
                        'broken pipe', 'processgroup', 'socket')


def is_communication_failure(error: BaseException) -> bool:
    """Whether ``error`` comes from talking to other ranks (not from this rank's own work)."""
    if isinstance(error, getattr(torch_dist, 'DistError', ())):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and any(hint in message for hint in _COMMUNICATION_HINTS)


def _store():
    """The default process group's key-value store (in rank 0, or in torchrun's agent)."""
    from torch.distributed import distributed_c10d
    return distributed_c10d._get_default_store()


def _distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized() and torch_dist.get_world_size() > 1


def announce_stop(line: str) -> None:
    """Leave this rank's stop line in the store for the peers to print."""
    try:
        _store().set(f'focalnet_stop/{torch_dist.get_rank()}', line)
    except Exception:  # the store is gone (it lives in rank 0 or torchrun's agent): peers name us
        pass


def stop_lines() -> Dict[int, str]:
    """{rank: line} of the other ranks that stopped with a line."""
    rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
    try:
        store = _store()
        keys = {r: f'focalnet_stop/{r}' for r in range(world_size) if r != rank}
        return {r: store.get(k).decode() for r, k in keys.items() if store.check([k])}
    except Exception:  # the store went with the rank that held it
        return {}


def leave_process_group() -> None:
    """Leave the process group (gloo closes its connections only when the process exits, which
    :func:`end_rank` does next: the peers' pending collective fails then)."""
    try:
        torch_dist.destroy_process_group()
    except Exception:  # a process group already broken: leaving is all that is left
        pass


def end_rank(runner, line: str, error: Optional[BaseException] = None, announce: bool = True,
             leave_group: bool = True):
    """End this rank after ``line`` (``error: ...``): DataLoader workers ended, the line in the
    store for the peers (``announce``), the process group left (``leave_group``; not from a
    thread while the main thread is blocked in it: the exit closes its connections), exit status
    1. Returns only outside distributed runs, after ending the workers (the caller exits)."""
    end_run_workers(runner, error)
    if not _distributed():
        return
    if announce:
        announce_stop(line[len('error: '):] if line.startswith('error: ') else line)
    print(line, file=sys.stderr, flush=True)
    if leave_group:
        leave_process_group()
    sys.stdout.flush()
    logging.shutdown()  # the log files complete
    os._exit(1)  # nothing left to wait for at interpreter exit


def error_line(error: BaseException) -> str:
    """The last line of ``error``'s traceback (``RuntimeError: DataLoader worker ... exited``)."""
    return traceback.format_exception_only(type(error), error)[-1].strip()


def unresponsive_ranks(wait_s: float = 5.0) -> Optional[List[int]]:
    """Ranks that do not announce themselves in the store within ``wait_s`` (None: no store)."""
    rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
    try:
        store = _store()
        store.set(f'focalnet_alive/{rank}', '1')
        missing = set(range(world_size)) - {rank}
        deadline = time.monotonic() + wait_s
        while missing and time.monotonic() < deadline:
            missing = {r for r in missing if not store.check([f'focalnet_alive/{r}'])}
            if missing:
                time.sleep(0.2)
    except Exception:  # the store itself is gone: it lives in rank 0 (or torchrun's agent)
        return None
    return sorted(missing)


def lost_rank_message(error: BaseException, timeout_s: Optional[float] = None) -> Optional[str]:
    """A one-line explanation when ``error`` is a distributed failure caused by another rank."""
    if not _distributed() or not is_communication_failure(error):
        return None
    rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
    stopped = stop_lines()  # the stopping rank writes its line before it leaves
    if stopped:
        first = min(stopped)
        return f'rank {first} of {world_size} stopped the run: {stopped[first]}'
    lost = unresponsive_ranks()
    if lost is None:
        who = 'rank 0 (which holds the process group store) is unreachable'
    elif lost:
        who = f'rank{"s" if len(lost) > 1 else ""} {", ".join(map(str, lost))} stopped responding'
    else:
        return None  # everybody is alive: not a lost rank
    cause = (str(error).strip().splitlines() or [type(error).__name__])[0]
    cause = re.sub(r'^\[[^\]]*\.(cc|cpp|h)(:\d+)?\]\s*', '', cause)  # the C++ source location
    cause = cause.split('. ')[0].rstrip('.')[:160]
    limit = f' (timeout {timeout_s:g} s)' if timeout_s else ''
    return (f'rank {rank} of {world_size}: {who}; training stopped{limit}. Cause: {cause}. '
            'Continue from the last complete checkpoint with --resume.')
