"""Naming the rank that died when a collective operation fails.

When a rank dies, its peers fail in their next collective: at once when its sockets close (gloo:
"Connection reset by peer"), or after the process group timeout (``env_cfg.dist_cfg.timeout``)
when it stops answering. Neither message says which rank is gone. Each surviving rank then
announces itself in the process group's key-value store and waits a few seconds for the others;
the ranks that never answer are the ones named.
"""
import re
import time
from typing import List, Optional

import torch.distributed as torch_dist

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


def unresponsive_ranks(wait_s: float = 5.0) -> Optional[List[int]]:
    """Ranks that do not announce themselves in the store within ``wait_s`` (None: no store)."""
    from torch.distributed import distributed_c10d
    rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
    try:
        store = distributed_c10d._get_default_store()
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
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return None
    if torch_dist.get_world_size() < 2 or not is_communication_failure(error):
        return None
    rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
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
