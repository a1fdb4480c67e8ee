"""An epoch-based training loop that can stop and resume in the middle of an epoch.

mmengine 0.10.7's EpochBasedTrainLoop checks ``stop_training`` only between epochs and, resumed
from a checkpoint written mid-epoch, starts that epoch again from its first batch (training on
those batches twice). This loop stops after the iteration that requested it, and on resume skips
the batches of the current epoch that were already trained, at the sampler level: the sampler
yields the same order (its shuffle is seeded by seed + epoch), and no skipped image is loaded.
An epoch that ends early (a stop, an error) ends its DataLoader workers at once.
"""
import logging

from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import DataLoader

from .workers import end_workers


class _SkipFirstBatches:
    """A batch sampler without its first ``skip`` batches (same order for the rest)."""

    def __init__(self, batch_sampler, skip: int):
        self.batch_sampler, self.skip = batch_sampler, skip

    def __iter__(self):
        batches = iter(self.batch_sampler)
        for _ in range(self.skip):
            next(batches, None)
        yield from batches

    def __len__(self):
        return max(len(self.batch_sampler) - self.skip, 0)


def skip_first_batches(loader: DataLoader, skip: int) -> DataLoader:
    """``loader`` for the rest of an epoch: same dataset, workers and collate, first batches cut."""
    workers = loader.num_workers
    return DataLoader(
        loader.dataset, batch_sampler=_SkipFirstBatches(loader.batch_sampler, skip),
        num_workers=workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
        timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context if workers else None,
        generator=loader.generator, prefetch_factor=loader.prefetch_factor if workers else None,
        persistent_workers=False, pin_memory_device=loader.pin_memory_device)


class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """EpochBasedTrainLoop that honours ``stop_training`` after any iteration and resumes mid-epoch.

    Same arguments as EpochBasedTrainLoop. A stop ends training without the epoch-end hooks (no
    epoch checkpoint, no validation: the stop checkpoint holds the state, and a resume that finds
    the epoch's batches all done runs its end then).
    """

    def run(self):
        self.runner.call_hook('before_train')
        while self._epoch < self._max_epochs and not self.stop_training:
            if not self.run_epoch():
                break  # stopped mid-epoch
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._epoch >= self.val_begin
                    and (self._epoch % self.val_interval == 0 or self._epoch == self._max_epochs)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_epoch(self) -> bool:
        """Train one epoch (its rest, when resumed mid-epoch); False when stopped before its end."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        per_epoch = len(self.dataloader)
        done = self._iter - self._epoch * per_epoch  # > 0 only when resumed mid-epoch
        loader = self.dataloader
        if 0 < done < per_epoch:
            print_log(f'Resuming epoch {self._epoch + 1} at iteration {done + 1}/{per_epoch}: '
                      f'skipping its first {done} batches (same order, not loaded)',
                      logger='current', level=logging.INFO)
            loader = skip_first_batches(self.dataloader, done)
        elif done >= per_epoch:
            loader = ()  # stopped right after the epoch's last iteration: only its end is left
        self.batches = iter(loader)
        try:
            for idx, data_batch in enumerate(self.batches, start=max(done, 0)):
                self.run_iter(idx, data_batch)
                if self.stop_training:  # even after the last batch: the epoch end comes on resume
                    end_workers(self.batches)
                    return False
        except BaseException:  # the workers end with the rank, not at an exit that waits for them
            end_workers(self.batches)
            raise
        finally:
            self.batches = None
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
        return True
