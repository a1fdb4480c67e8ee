"""Fast focal modulation: channels-last context aggregation and implementation dispatch.

Three implementations compute the same function (facts §1):

``reference``
    The official formulation in :mod:`focalnet_mm.models.focal_modulation`: ``f`` output permuted
    to NCHW, ``ctx.contiguous()`` copy, NCHW depthwise convolutions, NCHW ``h``, permute back.
    Bit-for-bit the math the equivalence tests compare against timm; the CPU default.
``fast``
    The same ops on channels-last memory end to end: the ``f`` output stays (B, H, W, C); the
    depthwise chain, the gating and ``h`` run on NCHW *views* of NHWC memory, so there is no
    permute copy of q or of the modulator, gating + accumulation is one ``addcmul`` per level,
    and on CUDA every dtype goes to cuDNN's NHWC depthwise kernels (PyTorch sends NCHW fp16/bf16
    depthwise convolutions with kernels other than 1/3/5 to its slow native kernel). Pure PyTorch,
    so ``torch.compile`` and ONNX export see ordinary ops. The CUDA default.
``triton``
    :mod:`focalnet_mm.ops.triton_focal`: one kernel per level for depthwise conv + GELU + gate +
    accumulate (forward) and fused backward kernels; opt-in until measured on a GPU.

Selection, first match wins: ``FocalModulation.impl`` (per module, see :func:`set_focal_impl`),
:func:`set_impl` (process-wide), the ``FOCALNET_IMPL`` environment variable, then ``auto``:
:func:`auto_impl`: ``fast`` on CUDA; on CPU ``fast`` only where autograd records and the map has
at least :data:`CPU_FAST_MIN_POSITIONS` positions — oneDNN's channels-last depthwise backward is
1.6-2.1x faster from 24x24 maps up and 1.5-5x slower below 20x20 (docs/benchmarks.md); CPU
inference is on par, so it stays on the reference path, the one the timm-equivalence tests check.
"""
import os
from typing import Iterable, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

IMPLS = ('reference', 'fast', 'triton')
#: smallest H*W at which CPU training takes ``fast`` under ``auto`` (crossover measured at 2
#: threads between 20x20 (0.7x) and 24x24 (1.6x), kernels [9, 11, 13], C 96-768)
CPU_FAST_MIN_POSITIONS = 24 * 24
ENV_VAR = 'FOCALNET_IMPL'

_global_impl: Optional[str] = None


def _check(impl: str, source: str) -> str:
    if impl not in IMPLS + ('auto', ):
        raise ValueError(f'Unknown FocalNet implementation {impl!r} from {source}; use one of '
                         f'{("auto", ) + IMPLS}.')
    return impl


def set_impl(impl: Optional[str]) -> None:
    """Process-wide implementation (``None`` returns control to ``FOCALNET_IMPL`` / auto)."""
    global _global_impl
    _global_impl = None if impl is None else _check(impl, 'focalnet_mm.ops.set_impl()')


def set_focal_impl(model: nn.Module, impl: Optional[str]) -> nn.Module:
    """Pin one implementation on every focal modulation inside ``model`` (``None`` unpins)."""
    if impl is not None:
        _check(impl, 'set_focal_impl()')
    found = 0
    for module in model.modules():
        if hasattr(module, 'focal_layers') and hasattr(module, 'impl'):
            module.impl = impl
            found += 1
    if not found:
        raise ValueError(f'set_focal_impl found no FocalModulation inside {type(model).__name__}.')
    return model


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _interpreting() -> bool:
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def auto_impl(x: torch.Tensor, needs_grad: bool) -> str:
    """What ``auto`` runs for a (B, H, W, C) input (the CUDA choice awaits the GPU benchmark)."""
    if x.device.type == 'cuda':
        return 'fast'
    if (x.device.type == 'cpu' and needs_grad and x.dim() == 4
            and x.shape[1] * x.shape[2] >= CPU_FAST_MIN_POSITIONS):
        return 'fast'
    return 'reference'


def resolve_impl(module_impl: Optional[str], x: torch.Tensor, needs_grad: bool = False) -> str:
    """The implementation to run for input ``x`` (see the module docstring for the order)."""
    if module_impl is not None:
        impl = _check(module_impl, 'FocalModulation.impl')
    elif _global_impl is not None:
        impl = _global_impl
    else:
        impl = _check(os.environ.get(ENV_VAR, 'auto'), f'the {ENV_VAR} environment variable')
    if impl == 'auto':
        return auto_impl(x, needs_grad)
    if impl == 'triton':
        exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        if exporting or torch.compiler.is_compiling():
            # exporters and inductor need plain ops; 'fast' is the same function in plain ops.
            return 'fast'
        if not triton_available():
            raise RuntimeError(f'{ENV_VAR}=triton needs the triton package (pip install triton); '
                               f'or use {ENV_VAR}=fast.')
        if x.device.type != 'cuda' and not _interpreting():
            raise RuntimeError(f'{ENV_VAR}=triton runs on CUDA tensors only (TRITON_INTERPRET=1 '
                               f'for CPU tests); got a {x.device.type} tensor, use {ENV_VAR}=fast.')
    return impl


def aggregate_context_channels_last(ctx: torch.Tensor, gates: torch.Tensor,
                                    weights: Iterable[torch.Tensor],
                                    normalize_modulator: bool) -> torch.Tensor:
    """Context aggregation on (B, H, W, C) memory; returns ``ctx_all`` as an NCHW view of NHWC.

    Args:
        ctx: (B, H, W, C), any strides (a slice of the ``f`` output).
        gates: (B, H, W, L + 1), any strides.
        weights: the L depthwise kernels, each (C, 1, k, k).
        normalize_modulator: divide by L + 1 (folded into the small gate tensor).
    """
    weights = list(weights)
    num_levels = len(weights)
    if normalize_modulator:
        gates = gates / (num_levels + 1)
    gates = gates.permute(0, 3, 1, 2)  # (B, L+1, H, W) view, channel stride 1
    # conv2d keeps channels-last in and out when its input is channels-last contiguous.
    x = ctx.contiguous().permute(0, 3, 1, 2)
    ctx_all = None
    for level, weight in enumerate(weights):
        x = F.gelu(F.conv2d(x, weight, padding=weight.shape[-1] // 2, groups=x.shape[1]))
        gate = gates[:, level:level + 1]
        ctx_all = x * gate if ctx_all is None else torch.addcmul(ctx_all, x, gate)
    ctx_global = F.gelu(x.mean((2, 3), keepdim=True))
    return torch.addcmul(ctx_all, ctx_global, gates[:, num_levels:])


def aggregate_context_triton(ctx: torch.Tensor, gates: torch.Tensor,
                             weights: List[torch.Tensor],
                             normalize_modulator: bool) -> torch.Tensor:
    """Triton version of :func:`aggregate_context_channels_last` (same arguments and result)."""
    from .triton_focal import focal_context_triton
    if torch.is_autocast_enabled(ctx.device.type):
        # run the chain in the autocast dtype like the reference's autocast convolutions do
        dtype = torch.get_autocast_dtype(ctx.device.type)
        ctx, gates, weights = ctx.to(dtype), gates.to(dtype), [w.to(dtype) for w in weights]
    scale = 1.0 / (len(weights) + 1) if normalize_modulator else 1.0
    out = focal_context_triton(ctx.contiguous(), gates, weights, scale)
    return out.permute(0, 3, 1, 2)


def focal_modulation_channels_last(module: nn.Module, x: torch.Tensor, impl: str) -> torch.Tensor:
    """``FocalModulation.forward`` for ``fast``/``triton``: no NCHW<->NHWC copies.

    ``h`` is called as the module (a 1x1 conv on a channels-last view) so forward hooks on it fire
    exactly as on the reference path.
    """
    dim, levels = module.dim, module.focal_level
    y = module.f(x)
    q, ctx, gates = torch.split(y, (dim, dim, levels + 1), -1)
    weights = [layer[0].weight for layer in module.focal_layers]
    aggregate = aggregate_context_triton if impl == 'triton' else aggregate_context_channels_last
    ctx_all = aggregate(ctx, gates, weights, module.normalize_modulator)
    modulator = module.h(ctx_all).permute(0, 2, 3, 1)
    out = q * modulator
    if module.ln is not None:
        out = module.ln(out)
    return module.proj_drop(module.proj(out))
