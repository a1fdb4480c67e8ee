"""The Triton context chain as one ``torch.library`` custom op, over two kernel sets.

Registered with torch.library so that ``torch.compile`` (fullgraph) and activation checkpointing
see one opaque op with a fake (shape) implementation and a registered backward, instead of a
Python ``autograd.Function`` that dynamo would have to trace or break on.

Kernel sets, same functional interface (``chain_forward`` / ``chain_backward``):

``rows``
    :mod:`focalnet_mm.ops.triton_focal`: one program per image row; measured on an H200
    (docs/benchmarks.md "GPU").
``tiled``
    :mod:`focalnet_mm.ops.triton_tiled`: 2-D tiles that read each input row once per tile, tile
    sizes from its ``TILE_TABLE``.

:func:`choose_kernels` picks per (channels, largest kernel, dtype) from ``TILE_TABLE``, whose
entries are filled by one GPU run of ``benchmark_focal_context.py --candidates`` (the row kernels
are a candidate too). While the table is unmeasured, the measured ``rows`` run.
"""
from typing import List, Optional, Tuple

import torch

from . import triton_focal, triton_tiled

KERNEL_SETS = {'rows': triton_focal, 'tiled': triton_tiled}


def choose_kernels(channels: int, max_kernel: int, dtype: torch.dtype) -> str:
    """'tiled' where the measured ``TILE_TABLE`` names a tile for (C, K, dtype), else 'rows'."""
    if not triton_tiled.TILE_TABLE_BASIS.startswith('measured'):
        return 'rows'
    entry = triton_tiled.TILE_TABLE.get(triton_tiled.table_key(channels, max_kernel, dtype))
    return 'rows' if entry in (None, 'rows') else 'tiled'


def _kernel_set(kernels: str):
    if kernels not in KERNEL_SETS:
        raise ValueError(f'Triton kernel set {kernels!r}: use one of {sorted(KERNEL_SETS)}.')
    return KERNEL_SETS[kernels]


@torch.library.custom_op('focalnet_mm::focal_context_fwd', mutates_args=())
def _fwd_op(src: torch.Tensor, gates: torch.Tensor, weights: List[torch.Tensor], scale: float,
            kernels: str) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
    acc, mean, pres = _kernel_set(kernels).chain_forward(src, gates, weights, scale)
    return acc, mean, pres


@_fwd_op.register_fake
def _(src, gates, weights, scale, kernels):
    return (torch.empty_like(src), src.new_empty((src.shape[0], src.shape[3]), dtype=torch.float32),
            [torch.empty_like(src) for _ in weights])


@torch.library.custom_op('focalnet_mm::focal_context_bwd', mutates_args=())
def _bwd_op(grad_acc: torch.Tensor, src: torch.Tensor, gates: torch.Tensor, mean: torch.Tensor,
            weights: List[torch.Tensor], pres: List[torch.Tensor], scale: float, kernels: str,
            needs_src_grad: bool, needs_weight_grad: List[bool]
            ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
    grad_src, grad_gates, grad_weights = _kernel_set(kernels).chain_backward(
        grad_acc, src, gates, mean, weights, pres, scale, needs_src_grad, needs_weight_grad)
    # an op returns tensors only: an empty tensor stands for "not needed"
    empty = src.new_empty(0)
    return (empty if grad_src is None else grad_src, grad_gates,
            [empty if g is None else g for g in grad_weights])


@_bwd_op.register_fake
def _(grad_acc, src, gates, mean, weights, pres, scale, kernels, needs_src_grad, needs_weight_grad):
    empty = src.new_empty(0)
    return (torch.empty_like(src) if needs_src_grad else empty, torch.empty_like(gates),
            [torch.empty_like(w) if need else empty for w, need in zip(weights, needs_weight_grad)])


def _setup_context(ctx, inputs, output):
    src, gates, weights, scale, kernels = inputs
    _, mean, pres = output
    ctx.scale, ctx.kernels, ctx.levels = scale, kernels, len(weights)
    ctx.mark_non_differentiable(mean, *pres)
    ctx.save_for_backward(src, gates, mean, *weights, *pres)


def _backward(ctx, grad_acc, _grad_mean, _grad_pres):
    # saved_tensors is read exactly once: non-reentrant activation checkpointing unpacks each
    # saved tensor once and raises on a second read
    saved = ctx.saved_tensors
    levels = ctx.levels
    src, gates, mean = saved[:3]
    weights, pres = list(saved[3:3 + levels]), list(saved[3 + levels:])
    needs_src, needs_gates, needs_weights = ctx.needs_input_grad[:3]
    needs_weight_grad = list(needs_weights) if isinstance(needs_weights, (list, tuple)) \
        else [bool(needs_weights)] * levels
    grad_src, grad_gates, grad_weights = _bwd_op(
        grad_acc, src, gates, mean, weights, pres, ctx.scale, ctx.kernels, bool(needs_src),
        needs_weight_grad)
    return (grad_src if needs_src else None, grad_gates if needs_gates else None,
            [g if need else None for g, need in zip(grad_weights, needs_weight_grad)], None, None)


_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def focal_context_triton(src: torch.Tensor, gates: torch.Tensor, weights: List[torch.Tensor],
                         scale: float, kernels: Optional[str] = None) -> torch.Tensor:
    """ctx_all (B, H, W, C) for ``src`` (B, H, W, C) contiguous and ``gates`` (B, H, W, L+1);
    ``kernels``: 'rows', 'tiled' or None (:func:`choose_kernels`)."""
    if src.dim() != 4 or not src.is_contiguous():
        raise ValueError('focal_context_triton expects a contiguous (B, H, W, C) tensor.')
    B, H, W, C = src.shape
    if gates.shape[:3] != src.shape[:3] or gates.shape[3] != len(weights) + 1:
        raise ValueError(f'gates {tuple(gates.shape)} do not match src {tuple(src.shape)} with '
                         f'{len(weights)} levels.')
    pix = gates.stride(2)
    if gates.stride(1) != W * pix or gates.stride(0) != H * W * pix:
        gates = gates.contiguous()  # the kernels address a pixel as base + pixel_index * stride
    if kernels is None:
        kernels = choose_kernels(C, max(w.shape[-1] for w in weights), src.dtype)
    _kernel_set(kernels)  # a bad name fails here, in one line, not inside the op
    return _fwd_op(src, gates, list(weights), float(scale), kernels)[0]


__all__ = ['focal_context_triton', 'choose_kernels', 'KERNEL_SETS']
