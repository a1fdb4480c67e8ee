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
    :mod:`focalnet_mm.ops.triton_focal`: one fused kernel per level forward (conv + GELU + gate +
    accumulate), fused elementwise backward, flipped-kernel input gradient, deterministic
    two-stage weight gradient.

The model owns the choice (``FocalNet(impl=...)``, see :mod:`focalnet_mm.models.focalnet`);
``auto`` is resolved per call by :func:`auto_impl` from :data:`AUTO_TABLE` (device, compute
dtype, training or inference, map size). Every decision and every fallback is logged once.
"""
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


@dataclass(frozen=True)
class AutoRule:
    """One row of the ``auto`` table: first matching row wins.

    ``dtypes`` ANY_DTYPE matches every compute dtype; ``min_positions`` is the smallest H*W the
    row applies to; ``basis`` says where the choice comes from (a measurement or a guess).
    """
    device: str
    training: bool
    dtypes: Optional[Tuple[torch.dtype, ...]]
    impl: str
    basis: str
    min_positions: int = 0


AUTO_TABLE: Tuple[AutoRule, ...] = (
    # CPU rows: measured on 2 threads, docs/benchmarks.md "CPU".
    AutoRule('cpu', False, ANY_DTYPE, 'reference',
             'measured: CPU inference on par, reference is the timm-exact path'),
    AutoRule('cpu', True, (torch.float32, ), 'fast',
             'measured: oneDNN channels-last backward 1.6-2.1x faster from 24x24 maps up',
             min_positions=CPU_FAST_MIN_POSITIONS),
    AutoRule('cpu', True, ANY_DTYPE, 'reference',
             'measured: channels-last backward 1.5-5x slower below 20x20 in fp32; in bf16 '
             '3.5x slower at 2x96x32x32 (context chain, docs/benchmarks.md)'),
    # CUDA rows: inference fp16 measured on one H200 (224x224, batch 128: fast 6326 img/s,
    # triton 5685, reference 5197); everything else is a GUESS awaiting
    # tools/analysis_tools/gpu_check.sh steps (a) and (c) (docs/benchmarks.md "GPU").
    AutoRule('cuda', False, (torch.float16, ), 'fast',
             'measured on H200: 224^2 fp16 inference fast 1.22x reference, 1.11x triton'),
    AutoRule('cuda', False, ANY_DTYPE, 'fast',
             'GUESS (unmeasured): as fp16 inference; see gpu_check.sh'),
    AutoRule('cuda', True, ANY_DTYPE, 'fast',
             'GUESS (unmeasured per impl): cuDNN NHWC; triton awaits gpu_check.sh step (a)'),
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
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _interpreting() -> bool:
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype convolutions on ``x`` run in: the autocast dtype where autocast is on."""
    device = x.device.type
    if device in ('cpu', 'cuda') and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def auto_impl(device: str, dtype: torch.dtype, training: bool, positions: int) -> AutoRule:
    """The first :data:`AUTO_TABLE` row matching; other devices get ``reference``."""
    for rule in AUTO_TABLE:
        if (rule.device == device and rule.training == training and positions >= rule.min_positions
                and (rule.dtypes is ANY_DTYPE or dtype in rule.dtypes)):
            return rule
    return AutoRule(device, training, ANY_DTYPE, 'reference', 'no table row for this device')


def resolve_impl(impl: str, x: torch.Tensor, training: bool) -> str:
    """The implementation that runs for a (B, H, W, C) input ``x`` when ``impl`` is requested."""
    exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    if impl == 'auto':
        dtype = compute_dtype(x)
        rule = auto_impl(x.device.type, dtype, training,
                         x.shape[1] * x.shape[2] if x.dim() == 4 else 0)
        if rule.impl == 'triton' and (exporting or torch.compiler.is_compiling()):
            rule = AutoRule(rule.device, training, ANY_DTYPE, 'fast', 'export/compile')
        mode = 'training' if training else 'inference'
        if not torch.compiler.is_compiling():  # logged by the eager runs; no graph break
            log_once(f'FocalNet impl auto -> {rule.impl!r} for {x.device.type} {dtype} {mode}'
                     + (f' on maps >= {rule.min_positions} positions' if rule.min_positions
                        else '') + f' ({rule.basis})')
        return rule.impl
    if impl == 'triton':
        if exporting or torch.compiler.is_compiling():
            # exporters and inductor need plain ops; 'fast' is the same function in plain ops.
            log_once("FocalNet impl 'triton' runs as 'fast' under ONNX export / torch.compile "
                     '(Triton custom kernels are opaque to them; same function in plain ops).')
            return 'fast'
        if not triton_available():
            raise RuntimeError("FocalNet impl='triton' needs the triton package (pip install "
                               "triton); or use impl='fast'.")
        if x.device.type != 'cuda' and not _interpreting():
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
    from .triton_focal import focal_context_triton
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
