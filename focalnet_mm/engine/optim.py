"""Optimizer wrapper for FSDP-sharded training (mmengine FlexibleRunner + FSDPStrategy).

mmengine 0.10.7's OptimWrapper clips gradients with ``torch.nn.utils.clip_grad_norm_`` over the
parameters it holds. Under FSDP (``use_orig_params=True``, mmengine's default) those are each
rank's shards, so every rank would clip by the norm of its own shard: a different, too small
norm on every rank, and DINO's ``clip_grad=dict(max_norm=0.1)`` would not be the recipe's.
"""
import math
from typing import Iterable

import torch
import torch.distributed as torch_dist
from mmengine.optim import OptimWrapper


def sharded_grad_norm(grads: Iterable[torch.Tensor], norm_type: float = 2.0) -> torch.Tensor:
    """Norm of the whole gradient whose disjoint shards are spread over the ranks.

    A collective: every rank must call it, also a rank that holds no gradient at all.
    """
    grads = list(grads)
    device = grads[0].device if grads else torch.device('cpu')
    if math.isinf(norm_type):
        local = max((g.detach().abs().max().float() for g in grads if g.numel()),
                    default=torch.zeros((), device=device))
        op = torch_dist.ReduceOp.MAX
    else:
        local = sum((g.detach().float().norm(norm_type) ** norm_type for g in grads),
                    torch.zeros((), device=device))
        op = torch_dist.ReduceOp.SUM
    total = local.clone()
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.all_reduce(total, op=op)
    return total if math.isinf(norm_type) else total ** (1.0 / norm_type)


class FSDPOptimWrapper(OptimWrapper):
    """OptimWrapper whose ``clip_grad=dict(max_norm=...)`` clips by the norm of the whole
    gradient of an FSDP-sharded model (shard norms combined over the ranks, as
    ``FullyShardedDataParallel.clip_grad_norm_`` does); every rank scales by the same factor.

    Use it with ``strategy=dict(type='FSDPStrategy', ...)``; with replicated parameters (DDP) the
    combined norm would count every gradient once per rank.
    """

    def _clip_grad(self) -> None:
        if self.grad_name != 'grad_norm':  # clip_grad=dict(type='value'): per element, no norm
            return super()._clip_grad()
        params = [p for group in self.optimizer.param_groups for p in group['params']
                  if p.requires_grad and p.grad is not None]
        max_norm = float(self.clip_grad_kwargs['max_norm'])
        norm_type = float(self.clip_grad_kwargs.get('norm_type', 2.0))
        total = sharded_grad_norm((p.grad for p in params), norm_type)
        scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for p in params:
            p.grad.detach().mul_(scale.to(p.grad.device, p.grad.dtype))
        self.message_hub.update_scalar(f'train/{self.grad_name}', float(total))
