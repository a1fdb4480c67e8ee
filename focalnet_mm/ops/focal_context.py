"""FocalNet's context aggregation as a tensor op, in three implementations, and the ``auto`` table.

:func:`aggregate_context` computes, for ``ctx`` (B, H, W, C), ``gates`` (B, H, W, L + 1) and the
L depthwise kernels, ``sum_l g_l * ctx_l + g_L * GELU(mean_hw(ctx_L))`` with
``ctx_l = GELU(dwconv_l(ctx_{l-1}))`` (optionally divided by L + 1), returned as NCHW:

``reference``
    The official formulation: an NCHW copy of ``ctx``, NCHW depthwise convolutions, the official
    loop. Bit-for-bit the math the equivalence tests compare against timm.
``fast``
    The same ops on channels-last memory: convolutions on NCHW *views* of NHWC memory, gating +
    accumulation one ``addcmul`` per level, the result an NCHW view of NHWC memory (no permute
    copy before or after). Pure PyTorch, so ``torch.compile`` and ONNX export see ordinary ops;
    on CUDA every dtype goes to cuDNN's NHWC depthwise kernels.
``triton``
    :mod:`focalnet_mm.ops.triton_op`: a ``torch.library`` custom op (so ``torch.compile``
    fullgraph and activation checkpointing keep it) over two kernel sets: the measured row
    kernels of :mod:`~focalnet_mm.ops.triton_focal` (one fused kernel per level forward, fused
    elementwise backward, flipped-kernel input gradient, deterministic two-stage weight gradient)
    and the tiled kernels of :mod:`~focalnet_mm.ops.triton_tiled`, chosen per shape by a table
    that one GPU ranking run fills.

The model owns the choice (``FocalNet(impl=...)``, see :mod:`focalnet_mm.models.focalnet`);
``auto`` is resolved per call by :func:`auto_impl` from :data:`AUTO_TABLE` (device, compute
dtype, training or inference, map size, largest kernel). Resolution is plain Python on static
facts (no tensor values), so under ``torch.compile`` it runs once at trace time and adds no graph
break; every decision and every fallback is logged once by the eager runs.
"""
import importlib.util
import os
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log

IMPLS = ('reference', 'fast', 'triton')
CHOICES = ('auto', ) + IMPLS
ENV_VAR = 'FOCALNET_IMPL'
#: smallest H*W at which CPU training takes ``fast`` under ``auto`` (crossover measured at 2
#: threads between 20x20 (0.7x) and 24x24 (1.6x), kernels [9, 11, 13], C 96-768)
CPU_FAST_MIN_POSITIONS = 24 * 24

ANY_DTYPE = None
#: smallest H*W at which CUDA training takes ``triton``: the chain's fwd+bwd crossover lies between
#: 25x42 (1050 positions, reference 1.05-1.2x faster in every precision) and 50x84 (4200, triton
#: 1.1-1.2x faster), measured on one H200 (gpu_check.sh step (a), 2026-12-04)
CUDA_TRITON_MIN_POSITIONS = 2048
#: largest kernel at which CUDA fp16 inference takes ``fast``: measured at kernels 3/5/7 (224^2,
#: classification); at 9/11/13 cuDNN's NHWC forward is 4-9x slower than the other two
CUDA_FAST_MAX_KERNEL = 7
_TRITON_INSTALLED = importlib.util.find_spec('triton') is not None
#: the Triton interpreter (CPU tests); triton reads the variable when kernels are defined, so the
#: value at import is the one that counts
_TRITON_INTERPRET = os.environ.get('TRITON_INTERPRET', '0') == '1'


@dataclass(frozen=True)
class AutoRule:
    """One row of the ``auto`` table: first matching row wins.

    ``dtypes`` ANY_DTYPE matches every compute dtype; ``min_positions`` is the smallest H*W the
    row applies to; ``max_kernel`` the largest depthwise kernel of the module (None: any);
    ``cpu_feature`` a CPU instruction set the row needs (see :data:`CPU_FEATURES`); ``basis`` says
    where the choice comes from (a measurement, with its machine, or a guess).
    """
    device: str
    training: bool
    dtypes: Optional[Tuple[torch.dtype, ...]]
    impl: str
    basis: str
    min_positions: int = 0
    max_kernel: Optional[int] = None
    cpu_feature: Optional[str] = None


def _cpu_features() -> frozenset:
    """Instruction sets that change which CPU path is faster (read once, at import)."""
    try:
        return frozenset({'avx512_bf16'} if torch.cpu._is_avx512_bf16_supported() else ())
    except (AttributeError, RuntimeError):
        return frozenset()


#: native bf16 arithmetic (AVX512-BF16, also on AMX CPUs): oneDNN's bf16 channels-last kernels
#: then beat the NCHW path, where without it bf16 is emulated and the NCHW path wins
CPU_FEATURES = _cpu_features()


AUTO_TABLE: Tuple[AutoRule, ...] = (
    # CPU rows: measured on 2 threads, docs/benchmarks.md "CPU"; which path wins depends on the
    # instruction sets (a row with cpu_feature applies only where the CPU has it).
    AutoRule('cpu', False, ANY_DTYPE, 'reference',
             'measured on a 2-core AMD EPYC with AVX2: CPU inference on par, reference is the '
             'timm-exact path'),
    AutoRule('cpu', True, (torch.float32, ), 'fast',
             'measured on a 2-core AMD EPYC with AVX2: oneDNN channels-last backward 1.6-2.1x '
             'faster from 24x24 maps up', min_positions=CPU_FAST_MIN_POSITIONS),
    AutoRule('cpu', True, (torch.bfloat16, ), 'fast',
             'measured on a 2-core AMD EPYC with AVX512-BF16: chain fwd+bwd bf16 kernels 3/5/7 '
             'fast 33.5 ms vs reference 45.3 at 2x96x32x32, 93 vs 143 at 2x96x56x56 (and a 2-core '
             'Intel AVX-512: 82.5 vs 88.8; docs/benchmarks.md)', min_positions=CPU_FAST_MIN_POSITIONS,
             cpu_feature='avx512_bf16'),
    AutoRule('cpu', True, ANY_DTYPE, 'reference',
             'measured on a 2-core AMD EPYC with AVX2: channels-last backward 1.5-5x slower '
             'below 20x20 in fp32; in bf16 (emulated) 3.5x slower at 2x96x32x32 (context chain, '
             'docs/benchmarks.md)'),
    # CUDA rows: one NVIDIA H200, torch 2.11 + CUDA 13, triton 3.6, 2026-12-04
    # (docs/benchmarks.md "GPU").
    AutoRule('cuda', True, ANY_DTYPE, 'triton',
             'measured on H200: Mask R-CNN FocalNet-T step fp32 212 ms (triton) vs 222 (reference) '
             'vs 438 (fast), AMP 230/241/471; backbone fwd+bwd 93/107/294 ms fp32, 78/87/333 bf16',
             min_positions=CUDA_TRITON_MIN_POSITIONS),
    AutoRule('cuda', True, ANY_DTYPE, 'reference',
             'measured on H200: chain fwd+bwd at 2x768x25x42 reference 2.05 ms vs triton 2.29 '
             '(fp32), 2.04 vs 2.42 (bf16), 2.08 vs 2.29 (fp16); fast 3.5-4x slower'),
    AutoRule('cuda', False, (torch.float16, ), 'fast',
             'measured on H200: 224^2 batch 128 fp16 inference, kernels 3/5/7: fast 6035 img/s, '
             'triton 5623, reference 4107', max_kernel=CUDA_FAST_MAX_KERNEL),
    AutoRule('cuda', False, ANY_DTYPE, 'fast',
             'GUESS (unmeasured): fp32/bf16 inference with kernels <= 7 as fp16 (gpu_check.sh)',
             max_kernel=CUDA_FAST_MAX_KERNEL),
    AutoRule('cuda', False, ANY_DTYPE, 'triton',
             'measured on H200: chain forward, kernels 9/11/13, fp32/bf16/fp16, fastest at '
             '2x96x200x336 (2.3 vs reference 2.8 vs fast 20.4 ms fp32) and at every stage shape '
             'within 0.1 ms of the fastest'),
)

_logged = set()


def log_once(message: str) -> None:
    """Log ``message`` once per process (kernel choices and fallbacks are visible, not noisy)."""
    if message not in _logged:
        _logged.add(message)
        print_log(message, logger='current')


def check_impl(impl: str, source: str) -> str:
    if impl not in CHOICES:
        raise ValueError(f'Unknown FocalNet implementation {impl!r} from {source}; use one of '
                         f'{CHOICES}.')
    return impl


def requested_impl(impl: Optional[str]) -> Tuple[str, str]:
    """(implementation, why) for a backbone built with ``impl``: the argument if given, else the
    ``FOCALNET_IMPL`` environment variable, else ``auto``. Called once, when the model is built."""
    if impl is not None:
        return check_impl(impl, 'the impl argument'), 'the impl argument'
    env = os.environ.get(ENV_VAR)
    if env:
        return check_impl(env, f'the {ENV_VAR} environment variable'), f'{ENV_VAR}={env}'
    return 'auto', 'the default'


def triton_available() -> bool:
    """Whether the triton package is installed (looked up once, at import)."""
    return _TRITON_INSTALLED


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype convolutions on ``x`` run in: the autocast dtype where autocast is on."""
    device = x.device.type
    if device in ('cpu', 'cuda') and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def auto_impl(device: str, dtype: torch.dtype, training: bool, positions: int,
              max_kernel: int = 0) -> AutoRule:
    """The first :data:`AUTO_TABLE` row matching; other devices get ``reference``."""
    for rule in AUTO_TABLE:
        if (rule.device == device and rule.training == training and positions >= rule.min_positions
                and (rule.max_kernel is None or max_kernel <= rule.max_kernel)
                and (rule.cpu_feature is None or rule.cpu_feature in CPU_FEATURES)
                and (rule.dtypes is ANY_DTYPE or dtype in rule.dtypes)):
            return rule
    return AutoRule(device, training, ANY_DTYPE, 'reference', 'no table row for this device')


def _log_eager(message: str) -> None:
    # under torch.compile the choice is made at trace time and logging would break the graph
    if not torch.compiler.is_compiling():
        log_once(message)


def resolve_impl(impl: str, x: torch.Tensor, training: bool, max_kernel: int = 0) -> str:
    """The implementation that runs for a (B, H, W, C) input ``x`` when ``impl`` is requested.

    ``max_kernel`` is the module's largest depthwise kernel (rows of the ``auto`` table depend on
    it). Only static facts are read (device, dtype, shape, flags), so dynamo evaluates this at
    trace time without a graph break.
    """
    exporting = torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
    if impl == 'auto' and exporting:  # plain ops, not chosen by the traced size (a tensor here)
        return 'reference'
    if impl == 'auto':
        dtype = compute_dtype(x)
        rule = auto_impl(x.device.type, dtype, training,
                         x.shape[1] * x.shape[2] if x.dim() == 4 else 0, max_kernel)
        chosen = rule.impl
        if chosen == 'triton' and (exporting or not _TRITON_INSTALLED):
            chosen = 'reference'  # the next-fastest measured path, plain ops
            _log_eager('FocalNet impl auto: triton ' + (
                'cannot be exported (custom kernels)' if exporting else
                'is not installed (pip install triton)') + "; running 'reference' instead")
        mode = 'training' if training else 'inference'
        _log_eager(f'FocalNet impl auto -> {chosen!r} for {x.device.type} {dtype} {mode}'
                   + (f' on maps >= {rule.min_positions} positions' if rule.min_positions else '')
                   + (f' with kernels <= {rule.max_kernel}' if rule.max_kernel else '')
                   + f' ({rule.basis})')
        return chosen
    if impl == 'triton':
        if exporting:
            # ONNX / TorchScript need plain ops; 'fast' is the same function in plain ops.
            _log_eager("FocalNet impl 'triton' runs as 'fast' under ONNX export / tracing (Triton "
                       'kernels cannot be exported; same function in plain ops).')
            return 'fast'
        if not _TRITON_INSTALLED:
            raise RuntimeError("FocalNet impl='triton' needs the triton package (pip install "
                               "triton); or use impl='fast'.")
        if x.device.type != 'cuda' and not _TRITON_INTERPRET:
            raise RuntimeError(f"FocalNet impl='triton' runs on CUDA tensors only "
                               f'(TRITON_INTERPRET=1 for CPU tests); got a {x.device.type} '
                               "tensor, use impl='fast'.")
    return impl


# ------------------------------------------------------------------------------ the op
def _aggregate_reference(ctx, gates, weights, normalize_modulator):
    """The official loop on an NCHW copy (bit-exact with the official/timm code)."""
    ctx = ctx.permute(0, 3, 1, 2).contiguous()
    gates = gates.permute(0, 3, 1, 2)
    num_levels = len(weights)
    ctx_all = 0
    for level, weight in enumerate(weights):
        ctx = F.gelu(F.conv2d(ctx, weight, None, 1, weight.shape[-1] // 2, 1, ctx.shape[1]))
        ctx_all = ctx_all + ctx * gates[:, level:level + 1]
    ctx_global = F.gelu(ctx.mean((2, 3), keepdim=True))
    ctx_all = ctx_all + ctx_global * gates[:, num_levels:]
    if normalize_modulator:
        ctx_all = ctx_all / (num_levels + 1)
    return ctx_all


def aggregate_context_channels_last(ctx, gates, weights, normalize_modulator):
    """``fast``: the same function on (B, H, W, C) memory; an NCHW view of NHWC comes back."""
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


def _aggregate_triton(ctx, gates, weights, normalize_modulator):
    from .triton_op import focal_context_triton
    if torch.is_autocast_enabled(ctx.device.type):
        # run the chain in the autocast dtype like the reference's autocast convolutions do
        dtype = torch.get_autocast_dtype(ctx.device.type)
        ctx, gates, weights = ctx.to(dtype), gates.to(dtype), [w.to(dtype) for w in weights]
    scale = 1.0 / (len(weights) + 1) if normalize_modulator else 1.0
    return focal_context_triton(ctx.contiguous(), gates, list(weights), scale).permute(0, 3, 1, 2)


def aggregate_context(ctx: torch.Tensor, gates: torch.Tensor, weights: Sequence[torch.Tensor],
                      normalize_modulator: bool, impl: str = 'reference') -> torch.Tensor:
    """Hierarchical context aggregation; returns ``ctx_all`` (B, C, H, W).

    Args:
        ctx: (B, H, W, C), any strides (a slice of the ``f`` output).
        gates: (B, H, W, L + 1), any strides.
        weights: the L depthwise kernels, each (C, 1, k, k), k odd.
        normalize_modulator: divide by L + 1.
        impl: 'reference', 'fast' or 'triton' (resolve 'auto' with :func:`resolve_impl`).
    """
    if impl == 'reference':
        return _aggregate_reference(ctx, gates, list(weights), normalize_modulator)
    if impl == 'fast':
        return aggregate_context_channels_last(ctx, gates, list(weights), normalize_modulator)
    if impl == 'triton':
        return _aggregate_triton(ctx, gates, list(weights), normalize_modulator)
    raise ValueError(f'aggregate_context impl={impl!r}: use one of {IMPLS} '
                     "(resolve 'auto' with resolve_impl first).")
