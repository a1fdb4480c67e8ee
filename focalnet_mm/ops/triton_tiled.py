"""Tiled Triton kernels for FocalNet's focal context chain on (B, H, W, C) memory.

The chain, L levels then the global level (``scale`` is 1/(L+1) or 1)::

    post_0 input = src;  pre_l = dwconv_l(post_{l-1});  post_l = GELU(pre_l)
    acc = sum_l scale*g_l*post_l + scale*g_L*GELU(mean_hw(post_L))

Design: why "row scatter". A program owns an output tile of TILE_H rows x TILE_W columns x
BLOCK_C channels (channels fastest: coalesced loads). Triton cannot index or shift a register
tile by a runtime amount, so the (TILE_H+K-1) x (TILE_W+K-1) halo window cannot be loaded into
registers once and re-sliced per tap. What is expressible: the kernel walks the TILE_H+K-1 input
rows of the window once (a runtime loop); for each input row it loads the K column-shifted
TILE_W x BLOCK_C segments (a runtime loop; the shifts of one row hit the same cache lines, so the
row comes from DRAM/L2 once and from L1 K times) and adds every segment into each of the TILE_H
output rows it feeds, ``acc_r += segment * w[i - r, kw]``, with one hand-written accumulator per
row (TILE_H <= 4: a register tile cannot be indexed by a runtime row, and a 3-D row x column x
channel accumulator made Triton gather the (row, channel) weights through shared memory per tap).
Each input row is read once per tile instead of once per output row (``triton_focal`` reads it K
times); the price is masked weight rows at the window's ends, (TILE_H+K-1)/K x the useful FMAs.
TILE_H trades the two, which is why the tile is a measured choice (``CANDIDATES``,
``TILE_TABLE``), not a guess. No tap loop is unrolled, so compile time and registers stay bounded
for K up to 13 (docs/benchmarks.md, "Tiled Triton chain kernels").

One kernel, ``_tile_conv_kernel``, serves every pass through compile-time modes:

* forward (``MODE_FWD``): conv, then GELU, gate and accumulation fused; stores ``pre`` (saved for
  backward) and ``post`` (the next level's input, a temporary);
* backward (``MODE_BWD``): the input-gradient conv of level l+1 (the kernel rotated 180 degrees,
  applied to grad_pre_{l+1}) with level l's gate/GELU gradient fused into its epilogue:
  ``grad_pre_l = (conv + scale*g_l*G [+ global-level gradient]) * GELU'(pre_l)``, the gate
  gradient's per-channel-block partial sums, and ``post_l`` recomputed once for the weight
  gradient; the last level runs the same epilogue without a conv (``HAS_CONV=False``);
* plain (``MODE_PLAIN``): the source gradient of level 0.

The weight gradient is a separate pass (``triton_focal._dw_weight_grad_kernel`` with this module's
tiles, on the ``post`` the backward epilogue stored, so no GELU per tap): fusing it into the
input-gradient pass would need a register accumulator indexed by the runtime kernel row, which
Triton cannot express. Each program owns one kernel row kh, one channel block and a fixed group
of image rows, accumulates all K column taps at once in a (KP, TILE_W, BLOCK_C) register tile and
writes one partial sum; ``torch.sum`` over the groups finishes it: a fixed-order two-stage
reduction, no atomics, bitwise reproducible. Gate gradients are reduced the same way (one partial
per channel block). Math is fp32 in registers whatever the storage dtype; H, W and strides are
not specialised on, so new input sizes reuse compiled kernels.
Runs under ``TRITON_INTERPRET=1`` on CPU tensors. Offsets are int32: tensors up to 2**31 elements.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

# one home for what both kernel sets share: GELU, the (K*K, C) kernel layout, the weight gradient
from .triton_focal import _dw_weight_grad_kernel, _gelu, _kkc, global_level_backward

MODE_FWD, MODE_BWD, MODE_PLAIN = 0, 1, 2


@dataclass(frozen=True)
class TileConfig:
    """Tiles of one chain run. conv: TILE_H x TILE_W x BLOCK_C output tile; weight gradient:
    (KP x wgrad_w x wgrad_c) register tile per program, image rows split into ``wgrad_groups``
    fixed groups (the partial-sum count of the two-stage reduction)."""
    tile_h: int
    tile_w: int
    block_c: int
    num_warps: int
    wgrad_w: int
    wgrad_c: int
    wgrad_groups: int = 64

    @property
    def name(self) -> str:
        return (f'h{self.tile_h}w{self.tile_w}c{self.block_c}n{self.num_warps}'
                f'-g{self.wgrad_w}x{self.wgrad_c}r{self.wgrad_groups}')


#: the shipped candidates, side by side; `benchmark_focal_context.py --candidates` ranks them.
#: Conv accumulators a thread: TILE_H*TILE_W*BLOCK_C/(32*num_warps) fp32 registers; weight
#: gradient: KP*wgrad_w*wgrad_c/(32*num_warps). Registers and spills per variant: the sm_90
#: report in docs/benchmarks.md (none spills; each compiles in seconds).
CANDIDATES: Dict[str, TileConfig] = {c.name: c for c in (
    TileConfig(4, 32, 32, 4, 4, 32),  # default: 32 accumulators a thread, ~100 registers
    TileConfig(4, 64, 32, 4, 8, 32),  # most reuse per loaded row (64 accumulators a thread)
    TileConfig(2, 64, 32, 8, 8, 32),  # least FMA waste, (2+K-1)/K (on 4 warps: 8 B stack)
    TileConfig(4, 64, 32, 8, 8, 32),  # as the second on 8 warps: half the registers a thread
)}
DEFAULT_CONFIG = next(iter(CANDIDATES))

#: tile choice per (C, K, storage dtype): a CANDIDATES name, or 'rows' where the row kernels of
#: triton_focal won. UNMEASURED defaults: every entry is DEFAULT_CONFIG until one GPU run of
#: `benchmark_focal_context.py --candidates` prints the measured table to paste here
#: (docs/benchmarks.md, "Tiled Triton chain kernels"); until then triton_op runs the
#: measured row kernels.
TILE_TABLE_BASIS = 'UNMEASURED defaults (no GPU run yet)'
TILE_TABLE: Dict[Tuple[int, int, str], str] = {
    (c, k, dtype): DEFAULT_CONFIG
    for c in (96, 192, 384, 768) for k in (9, 11, 13) for dtype in ('fp32', 'bf16')}

_DTYPE_NAMES = {torch.float32: 'fp32', torch.bfloat16: 'bf16', torch.float16: 'fp16'}


def table_key(C: int, K: int, dtype: torch.dtype) -> Tuple[int, int, str]:
    """The :data:`TILE_TABLE` key of (C, K, dtype): fp16 takes the bf16 row (same storage width)."""
    name = _DTYPE_NAMES.get(dtype, 'fp32')
    return C, K, 'bf16' if name == 'fp16' else name


def pick_config(C: int, K: int, dtype: torch.dtype) -> TileConfig:
    """The table's config for (C, K, dtype); DEFAULT_CONFIG where the table has no row or the row
    kernels won there (``'rows'``: :mod:`focalnet_mm.ops.triton_op` then runs those)."""
    entry = TILE_TABLE.get(table_key(C, K, dtype), DEFAULT_CONFIG)
    return CANDIDATES[DEFAULT_CONFIG if entry == 'rows' else entry]


def _resolve(config: Union[None, str, TileConfig], C: int, K: int,
             dtype: torch.dtype) -> TileConfig:
    if config is None:
        return pick_config(C, K, dtype)
    if isinstance(config, TileConfig):
        return config
    if config not in CANDIDATES:
        raise ValueError(f'unknown tile config {config!r}; use one of {sorted(CANDIDATES)} or a '
                         'TileConfig.')
    return CANDIDATES[config]


# ------------------------------------------------------------------------------ kernels
@triton.jit
def _epilogue(res, b, row, cols, chans, chan_ok, out_ptr, pre_ptr, post_ptr, acc_ptr, gate_ptr,
              grad_acc_ptr, bc_ptr, gpart_ptr, H, W, C, P, g_sp, scale, cblk,
              MODE: tl.constexpr, FIRST: tl.constexpr, HAS_BC: tl.constexpr,
              STORE_POST: tl.constexpr):
    """The pass's epilogue for one output row (TILE_W x BLOCK_C) of conv result ``res``."""
    pix = (b * H + row) * W + cols
    pix_ok = (cols < W) & (row < H)
    offs = pix[:, None] * C + chans[None, :]
    mask = pix_ok[:, None] & chan_ok[None, :]
    if MODE == 0:  # forward: pre, post, acc += scale * g * post
        tl.store(pre_ptr + offs, res.to(pre_ptr.dtype.element_ty), mask=mask)
        post = _gelu(res)
        tl.store(post_ptr + offs, post.to(post_ptr.dtype.element_ty), mask=mask)
        gate = tl.load(gate_ptr + pix * g_sp, mask=pix_ok, other=0.0).to(tl.float32)
        contrib = post * (gate * scale)[:, None]
        if not FIRST:
            contrib += tl.load(acc_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(acc_ptr + offs, contrib.to(acc_ptr.dtype.element_ty), mask=mask)
    elif MODE == 1:  # backward: res = grad of post_l from level l+1; level l's gate/GELU grad
        grad_acc = tl.load(grad_acc_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        pre = tl.load(pre_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gate = tl.load(gate_ptr + pix * g_sp, mask=pix_ok, other=0.0).to(tl.float32)
        cdf = 0.5 * (1.0 + tl.math.erf(pre * 0.7071067811865476))
        post = pre * cdf
        grad_post = res + grad_acc * (gate * scale)[:, None]
        if HAS_BC:  # the global level's gradient, the same in every pixel of an image
            grad_post += tl.load(bc_ptr + b * C + chans, mask=chan_ok, other=0.0)[None, :]
        dgelu = cdf + pre * tl.exp(-0.5 * pre * pre) * 0.3989422804014327
        tl.store(out_ptr + offs, (grad_post * dgelu).to(out_ptr.dtype.element_ty), mask=mask)
        if STORE_POST:  # the next weight gradient's input, recomputed once here
            tl.store(post_ptr + offs, post.to(post_ptr.dtype.element_ty), mask=mask)
        tl.store(gpart_ptr + cblk * P + pix, tl.sum(grad_acc * post, axis=1) * scale,
                 mask=pix_ok)
    else:
        tl.store(out_ptr + offs, res.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=('H', 'W', 'tiles_h', 'P', 'g_sp'))
def _tile_conv_kernel(x_ptr, w_ptr, out_ptr, pre_ptr, post_ptr, acc_ptr, gate_ptr, grad_acc_ptr,
                      bc_ptr, gpart_ptr, H, W, C, tiles_h, P, g_sp, scale,
                      K: tl.constexpr, MODE: tl.constexpr, HAS_CONV: tl.constexpr,
                      FIRST: tl.constexpr, HAS_BC: tl.constexpr, STORE_POST: tl.constexpr,
                      TILE_H: tl.constexpr, TILE_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """TILE_H (1-4) output rows x TILE_W columns x BLOCK_C channels of a 'same'-padded stride-1
    depthwise conv of ``x`` with the (K*K, C) kernel ``w``, then the epilogue of ``MODE`` per row.

    One accumulator per output row (a register tile cannot be indexed by a runtime row).
    """
    pid = tl.program_id(0)
    b = pid // tiles_h
    h0 = (pid % tiles_h) * TILE_H
    cols = tl.program_id(1) * TILE_W + tl.arange(0, TILE_W)
    cblk = tl.program_id(2)
    chans = cblk * BLOCK_C + tl.arange(0, BLOCK_C)
    chan_ok = chans < C
    acc0 = tl.zeros((TILE_W, BLOCK_C), dtype=tl.float32)
    acc1 = tl.zeros((TILE_W, BLOCK_C), dtype=tl.float32)
    acc2 = tl.zeros((TILE_W, BLOCK_C), dtype=tl.float32)
    acc3 = tl.zeros((TILE_W, BLOCK_C), dtype=tl.float32)
    if HAS_CONV:
        pad = K // 2
        x_offs = cols[:, None] * C + chans[None, :]
        # each input row of the halo window once; each of its K column shifts feeds every
        # output row r of the tile with kernel row i - r (rows unrolled by hand: a jit helper
        # call per tap costs the interpreter ~1 ms; masks and offsets hoisted for the same reason)
        for i in tl.range(0, TILE_H + K - 1, loop_unroll_factor=1):
            ih = h0 + i - pad
            row_ok = (ih >= 0) & (ih < H)
            x_row = x_ptr + ((b * H + ih) * W - pad) * C + x_offs
            w_row = w_ptr + i * K * C + chans
            m0 = chan_ok & (i < K)
            m1 = chan_ok & (i >= 1) & (i - 1 < K)
            m2 = chan_ok & (i >= 2) & (i - 2 < K)
            m3 = chan_ok & (i >= 3) & (i - 3 < K)
            for kw in tl.range(0, K, loop_unroll_factor=1):
                src_cols = cols + (kw - pad)
                ok = row_ok & (src_cols >= 0) & (src_cols < W)
                xv = tl.load(x_row + kw * C, mask=ok[:, None] & chan_ok[None, :],
                             other=0.0).to(tl.float32)
                w_tap = w_row + kw * C
                acc0 += xv * tl.load(w_tap, mask=m0, other=0.0).to(tl.float32)[None, :]
                if TILE_H > 1:
                    acc1 += xv * tl.load(w_tap - K * C, mask=m1, other=0.0).to(tl.float32)[None, :]
                if TILE_H > 2:
                    acc2 += xv * tl.load(w_tap - 2 * K * C, mask=m2,
                                         other=0.0).to(tl.float32)[None, :]
                if TILE_H > 3:
                    acc3 += xv * tl.load(w_tap - 3 * K * C, mask=m3,
                                         other=0.0).to(tl.float32)[None, :]
    _epilogue(acc0, b, h0, cols, chans, chan_ok, out_ptr, pre_ptr, post_ptr, acc_ptr,
              gate_ptr, grad_acc_ptr, bc_ptr, gpart_ptr, H, W, C, P, g_sp, scale, cblk,
              MODE, FIRST, HAS_BC, STORE_POST)
    if TILE_H > 1:
        _epilogue(acc1, b, h0 + 1, cols, chans, chan_ok, out_ptr, pre_ptr, post_ptr, acc_ptr,
                  gate_ptr, grad_acc_ptr, bc_ptr, gpart_ptr, H, W, C, P, g_sp, scale, cblk,
                  MODE, FIRST, HAS_BC, STORE_POST)
    if TILE_H > 2:
        _epilogue(acc2, b, h0 + 2, cols, chans, chan_ok, out_ptr, pre_ptr, post_ptr, acc_ptr,
                  gate_ptr, grad_acc_ptr, bc_ptr, gpart_ptr, H, W, C, P, g_sp, scale, cblk,
                  MODE, FIRST, HAS_BC, STORE_POST)
    if TILE_H > 3:
        _epilogue(acc3, b, h0 + 3, cols, chans, chan_ok, out_ptr, pre_ptr, post_ptr, acc_ptr,
                  gate_ptr, grad_acc_ptr, bc_ptr, gpart_ptr, H, W, C, P, g_sp, scale, cblk,
                  MODE, FIRST, HAS_BC, STORE_POST)


# ------------------------------------------------------------------------------ launches
def _conv(cfg: TileConfig, K: int, mode: int, shape, x=None, w=None, out=None, pre=None,
          post=None, acc=None, gate=None, grad_acc=None, bc=None, gpart=None, scale=1.0,
          first=False):
    """Launch ``_tile_conv_kernel``; ``x is None`` runs the epilogue without a conv."""
    B, H, W, C = shape
    tiles_h = triton.cdiv(H, cfg.tile_h)
    grid = (B * tiles_h, triton.cdiv(W, cfg.tile_w), triton.cdiv(C, cfg.block_c))
    some = next(t for t in (x, out, pre) if t is not None)  # any pointer for unused slots
    _tile_conv_kernel[grid](
        *(t if t is not None else some
          for t in (x, w, out, pre, post, acc, gate, grad_acc, bc, gpart)),
        H, W, C, tiles_h, B * H * W, gate.stride(2) if gate is not None else 0, float(scale),
        K=K, MODE=mode, HAS_CONV=x is not None, FIRST=first, HAS_BC=bc is not None,
        STORE_POST=post is not None, TILE_H=cfg.tile_h, TILE_W=cfg.tile_w, BLOCK_C=cfg.block_c,
        num_warps=cfg.num_warps, num_stages=1)


def _wgrad(cfg: TileConfig, grad_pre: torch.Tensor, src: torch.Tensor, K: int,
           dtype: torch.dtype) -> torch.Tensor:
    """(C, 1, K, K) gradient of a depthwise kernel: per-group partials, then a sum over groups."""
    B, H, W, C = src.shape
    n_rows = B * H
    rows_per_group = triton.cdiv(n_rows, cfg.wgrad_groups)
    groups = triton.cdiv(n_rows, rows_per_group)
    part = torch.empty((groups, K, K, C), dtype=torch.float32, device=src.device)
    _dw_weight_grad_kernel[(groups, K, triton.cdiv(C, cfg.wgrad_c))](
        grad_pre, src, part, H, W, C, n_rows, rows_per_group, K=K, KP=triton.next_power_of_2(K),
        GELU_SRC=False, BLOCK_W=cfg.wgrad_w, BLOCK_C=cfg.wgrad_c, num_warps=cfg.num_warps,
        num_stages=1)
    return part.sum(0).permute(2, 0, 1)[:, None].to(dtype).contiguous()


def _check(src: torch.Tensor, gates: torch.Tensor, weights: Sequence[torch.Tensor]) -> None:
    if src.dim() != 4 or not src.is_contiguous():
        raise ValueError('triton_tiled expects a contiguous (B, H, W, C) src; call .contiguous().')
    B, H, W, C = src.shape
    if gates.shape != (B, H, W, len(weights) + 1):
        raise ValueError(f'gates {tuple(gates.shape)} do not match src {tuple(src.shape)} with '
                         f'{len(weights)} levels: expected {(B, H, W, len(weights) + 1)}.')
    pix = gates.stride(2)
    if gates.stride(1) != W * pix or gates.stride(0) != H * W * pix:
        raise ValueError('gates must be contiguous in the pixel dims (base + pixel * stride(2)); '
                         'pass gates.contiguous().')
    for w in weights:
        if w.shape[0] != C or w.shape[1] != 1 or w.shape[2] != w.shape[3] or w.shape[-1] % 2 == 0:
            raise ValueError(f'depthwise kernel {tuple(w.shape)}: expected ({C}, 1, K, K) with K '
                             'odd.')


def chain_forward(src: torch.Tensor, gates: torch.Tensor, weights: Sequence[torch.Tensor],
                  scale: float, config: Union[None, str, TileConfig] = None
                  ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
    """(acc, mean, pres): ``acc`` (B, H, W, C) in src.dtype, ``mean`` (B, C) fp32 mean of the
    last level's GELU output, ``pres`` the L pre-activations (saved for :func:`chain_backward`).

    ``config``: None (the :data:`TILE_TABLE` choice per level), a :data:`CANDIDATES` name or a
    :class:`TileConfig` (every level).
    """
    _check(src, gates, weights)
    B, H, W, C = src.shape
    levels = len(weights)
    acc = torch.empty_like(src)
    pres = []
    x = src
    for level, weight in enumerate(weights):
        K = weight.shape[-1]
        pre, post = torch.empty_like(src), torch.empty_like(src)
        _conv(_resolve(config, C, K, src.dtype), K, MODE_FWD, src.shape, x=x, w=_kkc(weight),
              pre=pre, post=post, acc=acc, gate=gates[..., level], scale=scale, first=level == 0)
        pres.append(pre)
        x = post
    mean = x.float().mean((1, 2))
    acc.addcmul_((F.gelu(mean) * scale).to(acc.dtype)[:, None, None, :], gates[..., levels:])
    return acc, mean, pres


def chain_backward(grad_acc: torch.Tensor, src: torch.Tensor, gates: torch.Tensor,
                   mean: torch.Tensor, weights: Sequence[torch.Tensor],
                   pres: Sequence[torch.Tensor], scale: float, needs_src_grad: bool,
                   needs_weight_grad: Sequence[bool],
                   config: Union[None, str, TileConfig] = None
                   ) -> Tuple[Optional[torch.Tensor], torch.Tensor, List[Optional[torch.Tensor]]]:
    """(grad_src or None, grad_gates (gates' shape and dtype), grad_weights (None where not
    needed)) for the outputs of :func:`chain_forward`."""
    levels = len(weights)
    if len(pres) != levels or len(needs_weight_grad) != levels:
        raise ValueError(f'{levels} levels but {len(pres)} saved pre tensors and '
                         f'{len(needs_weight_grad)} needs_weight_grad flags.')
    grad_acc = grad_acc.contiguous()
    B, H, W, C = src.shape
    grad_gates, grad_bc = global_level_backward(grad_acc, gates, mean, scale)

    def gate_grad_epilogue(level, cfg, K, x, w, post):
        """grad_pre_level (+ post_level); ``x``/``w``: the conv of level+1's input gradient."""
        grad_pre = torch.empty_like(src)
        gpart = torch.empty((triton.cdiv(C, cfg.block_c), B, H, W), dtype=torch.float32,
                            device=src.device)
        _conv(cfg, K, MODE_BWD, src.shape, x=x, w=w, out=grad_pre, pre=pres[level], post=post,
              gate=gates[..., level], grad_acc=grad_acc,
              bc=grad_bc if level == levels - 1 else None, gpart=gpart, scale=scale)
        grad_gates[..., level] = gpart.sum(0)
        return grad_pre

    last_cfg = _resolve(config, C, weights[-1].shape[-1], src.dtype)
    grad_pre = gate_grad_epilogue(levels - 1, last_cfg, 1, None, None, None)
    grad_weights: List[Optional[torch.Tensor]] = [None] * levels
    grad_src = None
    for level in reversed(range(levels)):
        weight = weights[level]
        K = weight.shape[-1]
        cfg = _resolve(config, C, K, src.dtype)
        if level > 0:
            post = torch.empty_like(src) if needs_weight_grad[level] else None
            grad_pre_prev = gate_grad_epilogue(level - 1, cfg, K, grad_pre,
                                               _kkc(weight, flip=True), post)
            if post is not None:
                grad_weights[level] = _wgrad(cfg, grad_pre, post, K, weight.dtype)
            grad_pre = grad_pre_prev
        else:
            if needs_weight_grad[0]:
                grad_weights[0] = _wgrad(cfg, grad_pre, src, K, weight.dtype)
            if needs_src_grad:
                grad_src = torch.empty_like(src)
                _conv(cfg, K, MODE_PLAIN, src.shape, x=grad_pre, w=_kkc(weight, flip=True),
                      out=grad_src)
    return grad_src, grad_gates.to(gates.dtype), grad_weights


__all__ = ['CANDIDATES', 'DEFAULT_CONFIG', 'TILE_TABLE', 'TILE_TABLE_BASIS', 'TileConfig',
           'chain_backward', 'chain_forward', 'pick_config']
