"""Ending DataLoader workers when a run ends early (a stop line, an error, a signal).

Workers are ended explicitly, not left to garbage collection: they ignore SIGTERM (so that a
scheduler's signal to the whole job leaves the stop to the main process), and at interpreter exit
multiprocessing terminates its daemonic children with SIGTERM and then joins them, which waits
forever for a worker that ignored it; a non-persistent loader's iterator is often still referenced
by the traceback of the error that ended the run.
"""
import traceback
from typing import Optional

from mmengine.runner import BaseLoop


def end_workers(loader) -> None:
    """Shut down DataLoader workers now, the way the DataLoader does itself.

    ``loader``: a DataLoader (its persistent workers), mmengine's infinite iterator (the
    iteration loops') or a DataLoader iterator in flight.
    """
    iterator = getattr(loader, '_iterator', loader)
    if hasattr(iterator, '_shutdown_workers'):
        iterator._shutdown_workers()
    if getattr(loader, '_iterator', None) is not None and hasattr(loader, 'batch_sampler'):
        loader._iterator = None  # a DataLoader would hand out the shut-down iterator again


def end_run_workers(runner, error: Optional[BaseException] = None) -> None:
    """End the workers of every loader of ``runner``'s loops, and those that the frames of
    ``error`` hold (a validation loop's iterator in flight)."""
    for name in ('_train_loop', '_val_loop', '_test_loop'):
        loop = getattr(runner, name, None)
        if not isinstance(loop, BaseLoop):
            continue  # never built
        for loader in (getattr(loop, 'dataloader_iterator', None), getattr(loop, 'batches', None),
                       getattr(loop, 'dataloader', None)):
            if loader is not None:
                end_workers(loader)
    if error is not None and error.__traceback__ is not None:
        # a loader iterator held only by these frames is deleted now, and its __del__ ends its workers
        traceback.clear_frames(error.__traceback__)
