"""A linear warm-up over a share of the run, whatever the run's length.

mmengine's LinearLR warms up over a fixed ``end``: a recipe's 500 iterations outlast a short run
on a small set, and a share of the epochs (``end=0.1 * max_epochs`` with
``convert_to_iter_based``) rounds down to 0 iterations on one short epoch, which mmengine refuses
("end should be larger than begin"), or to 1, which keeps the learning rate at its warm-up start
for the whole run (its warm-up reaches the set value at step ``end - 1``). :class:`LinearWarmupLR`
takes the run from mmengine itself: a scheduler config without ``end`` gets the run's last
iteration (``by_epoch=False``) from the Runner, and the warm-up is ``share`` of it, at least the 2
iterations a linear warm-up needs and at most the run; a run of a single iteration has none. When
the warm-up is not ``share`` of the run, one log line says what it became.
"""
import logging

from mmengine.logging import print_log
from mmengine.optim.scheduler import LinearLR

#: fewest steps of a linear warm-up that reaches its set value (mmengine's ends one step early)
MIN_WARMUP_STEPS = 2


def warmup_steps(share: float, span: int) -> int:
    """Steps of a warm-up over ``share`` of ``span`` steps: at least 2 and at most ``span``;
    0 (no warm-up) when the span is shorter than 2 steps."""
    if span < MIN_WARMUP_STEPS:
        return 0
    return min(span, max(MIN_WARMUP_STEPS, round(share * span)))


class LinearWarmupLR(LinearLR):
    """mmengine's LinearLR over the first ``share`` of [begin, end), by default of the whole run.

    Args:
        optimizer: as LinearLR.
        share: part of the span that the warm-up lasts (0.1: the first 10 %).
        start_factor: learning rate factor at the first step (rises linearly to 1).
        begin, end: the span in steps; leave ``end`` out and the Runner sets the run's end
            (``max_iters`` with ``by_epoch=False``, ``max_epochs`` with ``by_epoch=True``).
        by_epoch, last_step, verbose: as LinearLR (``by_epoch=False``: steps are iterations).
    """

    def __init__(self, optimizer, share: float = 0.1, start_factor: float = 1e-3, begin: int = 0,
                 end: float = float('inf'), last_step: int = -1, by_epoch: bool = False,
                 verbose: bool = False):
        if not 0 < share <= 1:
            raise ValueError(f'LinearWarmupLR: share must be in (0, 1], got {share}')
        if end == float('inf') or end > 1e8:  # mmengine's INF: no train loop to take the run from
            raise ValueError('LinearWarmupLR needs the run\'s length: build it through the Runner '
                             '(which sets end to the run\'s last step) or give end')
        span, unit = int(end - begin), 'iterations' if not by_epoch else 'epochs'
        steps = warmup_steps(share, span)
        self.share = share
        exact = share * span
        if steps == 0:  # a single-step run: nothing to warm up, the set value from the start
            start_factor, steps = 1.0, 1
            print_log(f'LinearWarmupLR: the run has {span} {unit[:-1]}, too short for a warm-up: '
                      'trained at the set learning rate', logger='current', level=logging.WARNING)
        elif abs(steps - exact) >= 1:  # more than rounding: raised to 2 steps, or cut to the run
            print_log(f'LinearWarmupLR: a warm-up over {share:g} of a run of {span} {unit} would '
                      f'last {exact:g} {unit}; it lasts {steps} (at least {MIN_WARMUP_STEPS}, at '
                      'most the run)', logger='current', level=logging.WARNING)
        super().__init__(optimizer, start_factor=start_factor, end_factor=1.0, begin=begin,
                         end=begin + steps, last_step=last_step, by_epoch=by_epoch, verbose=verbose)
