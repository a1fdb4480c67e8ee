"""Triton kernels for FocalNet's context aggregation on (B, H, W, C) memory.

Forward, per level l (one kernel):   pre = dwconv_l(src); post = GELU(pre); acc += scale*g_l*post.
``pre`` of each level is saved; ``post`` is recomputed from it in backward.
Backward, per level, last to first:
  * ``_gate_gelu_bwd_kernel``: grad_post = scale*g_l*G + grad_next; grad_pre = grad_post*GELU'(pre);
    grad_g_l = scale * sum_c G * post, each program summing all channels of its pixels in a loop
    (no atomics: the result does not depend on scheduling);
  * input gradient: the forward kernel on grad_pre with the kernel rotated 180 degrees;
  * weight gradient: ``_dw_weight_grad_kernel`` writes one partial (K, K, C) sum per group of
    rows, and ``torch.sum`` over the groups finishes it: a fixed two-stage reduction, no atomics,
    bitwise reproducible for a given shape.

Compile cost is bounded by design (docs/benchmarks.md, sm_90 compile report): the kh taps are a
runtime loop and only the kw taps of one row are unrolled, so a kernel holds at most K tile loads
at once; tile sizes depend on (C, K) only and H, W and strides are not specialised on, so a new
input shape (multi-scale training) reuses the compiled kernels instead of compiling new ones.
Channels are the fastest axis of every tile, so loads and stores are coalesced; math is fp32 in
registers whatever the storage dtype. Runs under ``TRITON_INTERPRET=1`` on CPU tensors.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

_RSQRT2 = 0.7071067811865476
_RSQRT_2PI = 0.3989422804014327
#: target number of row groups of the weight-gradient's first stage (its partial buffer is
#: groups x K x K x C fp32; more groups = more parallel programs, a larger second stage)
_WGRAD_GROUPS = 64


@triton.jit
def _gelu(x):
    return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))


@triton.jit(do_not_specialize=('H', 'W', 'g_sb', 'g_sh', 'g_sw'))
def _dwconv_nhwc_kernel(src_ptr, w_ptr, pre_ptr, acc_ptr, gate_ptr, post_ptr,
                        H, W, C, g_sb, g_sh, g_sw, scale,
                        K: tl.constexpr, EPILOGUE: tl.constexpr, FIRST: tl.constexpr,
                        STORE_POST: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """One (b, h) row, BLOCK_W columns, BLOCK_C channels; 'same' zero padding, stride 1.

    EPILOGUE: also apply GELU, gate and accumulate into acc (else write pre only).
    """
    pid_bh = tl.program_id(0)
    b = pid_bh // H
    h = pid_bh % H
    cols = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    chans = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < W
    chan_ok = chans < C
    pad = K // 2
    res = tl.zeros((BLOCK_W, BLOCK_C), dtype=tl.float32)
    # runtime loop over kernel rows (not unrolled), unrolled over the K taps of one row
    for kh in tl.range(0, K, loop_unroll_factor=1):
        row = h + kh - pad
        row_ok = (row >= 0) & (row < H)
        row_base = (b * H + row) * W
        for kw in tl.static_range(K):
            src_cols = cols + (kw - pad)
            ok = row_ok & (src_cols >= 0) & (src_cols < W)
            offs = (row_base + src_cols)[:, None] * C + chans[None, :]
            xv = tl.load(src_ptr + offs, mask=ok[:, None] & chan_ok[None, :], other=0.0)
            wv = tl.load(w_ptr + (kh * K + kw) * C + chans, mask=chan_ok, other=0.0)
            res += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
    out_offs = ((b * H + h) * W + cols)[:, None] * C + chans[None, :]
    out_mask = col_ok[:, None] & chan_ok[None, :]
    tl.store(pre_ptr + out_offs, res.to(pre_ptr.dtype.element_ty), mask=out_mask)
    if EPILOGUE:
        post = _gelu(res)
        if STORE_POST:
            tl.store(post_ptr + out_offs, post.to(post_ptr.dtype.element_ty), mask=out_mask)
        gate = tl.load(gate_ptr + b * g_sb + h * g_sh + cols * g_sw, mask=col_ok, other=0.0)
        contrib = post * (gate.to(tl.float32) * scale)[:, None]
        if not FIRST:
            contrib += tl.load(acc_ptr + out_offs, mask=out_mask, other=0.0).to(tl.float32)
        tl.store(acc_ptr + out_offs, contrib.to(acc_ptr.dtype.element_ty), mask=out_mask)


@triton.jit(do_not_specialize=('P', 'HW', 'g_sp', 'gg_sp'))
def _gate_gelu_bwd_kernel(grad_acc_ptr, pre_ptr, gate_ptr, grad_next_ptr, grad_next_bc_ptr,
                          grad_pre_ptr, grad_gate_ptr, P, HW, C, g_sp, gg_sp, scale,
                          HAS_NEXT: tl.constexpr, HAS_NEXT_BC: tl.constexpr,
                          BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """BLOCK_P pixels x all channels (in BLOCK_C chunks) of one level's elementwise backward."""
    pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pix_ok = pix < P
    gate = tl.load(gate_ptr + pix * g_sp, mask=pix_ok, other=0.0).to(tl.float32)
    gate_sum = tl.zeros((BLOCK_P, ), dtype=tl.float32)
    for c0 in tl.range(0, C, BLOCK_C, loop_unroll_factor=1):
        chans = c0 + tl.arange(0, BLOCK_C)
        mask = pix_ok[:, None] & (chans < C)[None, :]
        offs = pix[:, None] * C + chans[None, :]
        grad_acc = tl.load(grad_acc_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        pre = tl.load(pre_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        cdf = 0.5 * (1.0 + tl.math.erf(pre * 0.7071067811865476))
        post = pre * cdf
        grad_post = grad_acc * (gate * scale)[:, None]
        if HAS_NEXT:
            grad_post += tl.load(grad_next_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if HAS_NEXT_BC:
            bc_offs = (pix // HW)[:, None] * C + chans[None, :]
            grad_post += tl.load(grad_next_bc_ptr + bc_offs, mask=mask, other=0.0)
        dgelu = cdf + pre * tl.exp(-0.5 * pre * pre) * 0.3989422804014327
        tl.store(grad_pre_ptr + offs, (grad_post * dgelu).to(grad_pre_ptr.dtype.element_ty),
                 mask=mask)
        gate_sum += tl.sum(grad_acc * post, axis=1)
    tl.store(grad_gate_ptr + pix * gg_sp, gate_sum * scale, mask=pix_ok)


@triton.jit(do_not_specialize=('H', 'W', 'n_rows', 'rows_per_group'))
def _dw_weight_grad_kernel(grad_ptr, src_ptr, part_ptr, H, W, C, n_rows, rows_per_group,
                           K: tl.constexpr, KP: tl.constexpr, GELU_SRC: tl.constexpr,
                           BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """First stage of the weight gradient: one group of (b, h) rows, one kernel row kh, all K
    kw taps (padded to KP), BLOCK_C channels; writes part[group, kh, kw, c].

    GELU_SRC: the convolution's input is GELU(src) (src holds the previous level's ``pre``).
    """
    group = tl.program_id(0)
    kh = tl.program_id(1)
    chans = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    chan_ok = chans < C
    kws = tl.arange(0, KP)
    pad = K // 2
    acc = tl.zeros((KP, BLOCK_W, BLOCK_C), dtype=tl.float32)
    for r in tl.range(0, rows_per_group, loop_unroll_factor=1):
        bh = group * rows_per_group + r
        b = bh // H
        h = bh % H
        src_row = h + kh - pad
        row_ok = (bh < n_rows) & (src_row >= 0) & (src_row < H)
        for w0 in tl.range(0, W, BLOCK_W, loop_unroll_factor=1):
            cols = w0 + tl.arange(0, BLOCK_W)
            g_mask = (cols < W)[:, None] & chan_ok[None, :] & row_ok
            g = tl.load(grad_ptr + (bh * W + cols)[:, None] * C + chans[None, :], mask=g_mask,
                        other=0.0).to(tl.float32)
            src_cols = cols[None, :] + kws[:, None] - pad  # (KP, BLOCK_W)
            s_ok = (src_cols >= 0) & (src_cols < W) & (kws < K)[:, None] & row_ok
            s_offs = ((b * H + src_row) * W + src_cols)[:, :, None] * C + chans[None, None, :]
            s = tl.load(src_ptr + s_offs, mask=s_ok[:, :, None] & chan_ok[None, None, :],
                        other=0.0).to(tl.float32)
            if GELU_SRC:
                s = _gelu(s)
            acc += g[None, :, :] * s
    part = tl.sum(acc, axis=1)  # (KP, BLOCK_C)
    offs = ((group * K + kh) * K + kws)[:, None] * C + chans[None, :]
    tl.store(part_ptr + offs, part, mask=(kws < K)[:, None] & chan_ok[None, :])


# ------------------------------------------------------------------------------ tile choices
def conv_tiles(C: int, K: int) -> Tuple[int, int]:
    """(BLOCK_W, BLOCK_C) of the depthwise kernel, from (C, K) only (never from H or W).

    Large kernels get smaller tiles so the K loads of one kernel row fit in registers.
    """
    block_c = min(triton.next_power_of_2(C), 128 if K <= 5 else 64)
    block_w = max(1, (2048 if K <= 5 else 512) // block_c)
    return block_w, block_c


def gate_tiles(C: int) -> Tuple[int, int]:
    """(BLOCK_P, BLOCK_C) of the gate/GELU backward kernel."""
    return 16, min(triton.next_power_of_2(C), 64)


def wgrad_tiles(C: int, K: int) -> Tuple[int, int, int]:
    """(KP, BLOCK_W, BLOCK_C) of the weight-gradient kernel: KP x BLOCK_W x BLOCK_C = 2048."""
    kp = triton.next_power_of_2(K)
    block_c = min(triton.next_power_of_2(C), 32)
    return kp, max(1, 2048 // (kp * block_c)), block_c


# ------------------------------------------------------------------------------ launches
def _dwconv(src, weight_kkc, K, pre, acc=None, gate=None, scale=1.0, first=True, post=None):
    """Launch the depthwise kernel on (B, H, W, C) contiguous ``src``."""
    B, H, W, C = src.shape
    block_w, block_c = conv_tiles(C, K)
    grid = (B * H, triton.cdiv(W, block_w), triton.cdiv(C, block_c))
    epilogue = acc is not None
    g_strides = gate.stride()[:3] if epilogue else (0, 0, 0)
    _dwconv_nhwc_kernel[grid](
        src, weight_kkc, pre, acc if epilogue else pre, gate if epilogue else pre,
        post if post is not None else pre, H, W, C, *g_strides, scale,
        K=K, EPILOGUE=epilogue, FIRST=first, STORE_POST=post is not None,
        BLOCK_W=block_w, BLOCK_C=block_c, num_warps=4, num_stages=1)
    return pre


def _weight_grad(grad_pre: torch.Tensor, src: torch.Tensor, K: int, gelu_src: bool,
                 dtype: torch.dtype) -> torch.Tensor:
    """(C, 1, K, K) gradient of a depthwise kernel: per-group partials, then a sum over groups."""
    B, H, W, C = src.shape
    n_rows = B * H
    rows_per_group = triton.cdiv(n_rows, _WGRAD_GROUPS)
    groups = triton.cdiv(n_rows, rows_per_group)
    kp, block_w, block_c = wgrad_tiles(C, K)
    part = torch.empty((groups, K, K, C), dtype=torch.float32, device=src.device)
    _dw_weight_grad_kernel[(groups, K, triton.cdiv(C, block_c))](
        grad_pre, src, part, H, W, C, n_rows, rows_per_group, K=K, KP=kp, GELU_SRC=gelu_src,
        BLOCK_W=block_w, BLOCK_C=block_c, num_warps=4, num_stages=1)
    return part.sum(0).permute(2, 0, 1)[:, None].to(dtype).contiguous()


def _kkc(weight: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """(C, 1, K, K) -> (K*K, C) contiguous, optionally rotated 180 degrees (input gradient)."""
    w = weight[:, 0]
    if flip:
        w = w.flip((1, 2))
    return w.permute(1, 2, 0).reshape(-1, w.shape[0]).contiguous()


def chain_forward(src: torch.Tensor, gates: torch.Tensor, weights: Sequence[torch.Tensor],
                  scale: float) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
    """(acc, mean, pres): the chain's output (B, H, W, C), the (B, C) fp32 mean of the last
    level's GELU output, and every level's pre-activation (what the backward needs)."""
    levels = len(weights)
    acc = torch.empty_like(src)
    pres = []
    x = src
    for level, weight in enumerate(weights):
        pre = torch.empty_like(src)
        post = torch.empty_like(src)
        _dwconv(x, _kkc(weight), weight.shape[-1], pre, acc=acc, gate=gates[..., level],
                scale=scale, first=level == 0, post=post)
        pres.append(pre)
        x = post
    mean = x.float().mean((1, 2))  # (B, C) of the last level's GELU output
    glob = F.gelu(mean)
    acc.addcmul_((glob * scale).to(acc.dtype)[:, None, None, :], gates[..., levels:])
    return acc, mean, pres


def global_level_backward(grad_acc: torch.Tensor, gates: torch.Tensor, mean: torch.Tensor,
                          scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Backward of the global level, ``acc += scale * GELU(mean_hw(post_L)) * g_L`` (shared by
    both kernel sets): (fp32 gate gradients with the global level's filled in, the (B, C)
    gradient that reaches every pixel of post_L)."""
    levels = gates.shape[-1] - 1
    H, W = grad_acc.shape[1:3]
    grad_gates = torch.empty(gates.shape, dtype=torch.float32, device=grad_acc.device)
    glob = F.gelu(mean)
    grad_gates[..., levels] = scale * torch.einsum('bhwc,bc->bhw', grad_acc.float(), glob)
    grad_glob = scale * torch.einsum('bhwc,bhw->bc', grad_acc.float(), gates[..., levels].float())
    cdf = 0.5 * (1.0 + torch.erf(mean * _RSQRT2))
    dgelu = cdf + mean * torch.exp(-0.5 * mean * mean) * _RSQRT_2PI
    return grad_gates, (grad_glob * dgelu / (H * W)).contiguous()


def chain_backward(grad_acc: torch.Tensor, src: torch.Tensor, gates: torch.Tensor,
                   mean: torch.Tensor, weights: Sequence[torch.Tensor],
                   pres: Sequence[torch.Tensor], scale: float, needs_src_grad: bool,
                   needs_weight_grad: Sequence[bool]):
    """(grad_src or None, grad_gates, [grad_weight or None per level]) of :func:`chain_forward`."""
    levels = len(weights)
    grad_acc = grad_acc.contiguous()
    B, H, W, C = src.shape
    grad_gates, grad_next_bc = global_level_backward(grad_acc, gates, mean, scale)
    grad_weights = [None] * levels
    grad_next = None
    P = B * H * W
    block_p, block_c = gate_tiles(C)
    for level in reversed(range(levels)):
        pre, weight = pres[level], weights[level]
        K = weight.shape[-1]
        grad_pre = torch.empty_like(pre)
        gate = gates[..., level]
        last = level == levels - 1
        _gate_gelu_bwd_kernel[(triton.cdiv(P, block_p), )](
            grad_acc, pre, gate, grad_next if grad_next is not None else pre,
            grad_next_bc if last else mean, grad_pre, grad_gates[..., level], P, H * W, C,
            gate.stride(2), grad_gates.stride(2), scale,
            HAS_NEXT=grad_next is not None, HAS_NEXT_BC=last,
            BLOCK_P=block_p, BLOCK_C=block_c, num_warps=4, num_stages=1)
        if needs_weight_grad[level]:
            # level l convolves GELU(pre_{l-1}); level 0 convolves src
            level_src = src if level == 0 else pres[level - 1]
            grad_weights[level] = _weight_grad(grad_pre, level_src, K, level > 0, weight.dtype)
        if level > 0 or needs_src_grad:
            grad_next = _dwconv(grad_pre, _kkc(weight, flip=True), K, torch.empty_like(pre))
        else:
            grad_next = None
    return grad_next, grad_gates.to(gates.dtype), grad_weights


__all__ = ['chain_forward', 'chain_backward', 'conv_tiles', 'gate_tiles', 'wgrad_tiles']
