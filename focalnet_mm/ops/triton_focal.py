"""Triton kernels for FocalNet's context aggregation on (B, H, W, C) memory.

Forward, per level l (one kernel):   pre = dwconv_l(src); post = GELU(pre); acc += scale*g_l*post.
Only ``pre`` of each level is saved (``post`` is recomputed from it in backward: one GELU per
element instead of a second full-size activation kept alive).
Backward, per level, last to first:
  * ``_gate_gelu_bwd``: grad_post = scale*g_l*G + grad_next; grad_pre = grad_post * GELU'(pre);
    grad_g_l = scale * sum_c G * post  (fused; partial channel sums by atomics),
  * input gradient: the same depthwise kernel run on grad_pre with the kernel flipped,
  * weight gradient: cuDNN/oneDNN through ``aten.convolution_backward`` (a reduction over every
    pixel, which atomics in Triton would serialise).
Channels are the fastest axis in every tile, so all loads and stores are coalesced. Math is
fp32 in registers whatever the storage dtype. Runs under ``TRITON_INTERPRET=1`` on CPU tensors
(tests/test_ops_focal_context.py checks it against the reference there).
"""
from typing import List

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

_RSQRT2 = 0.7071067811865476
_RSQRT_2PI = 0.3989422804014327


@triton.jit
def _gelu(x):
    return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))


@triton.jit
def _dwconv_nhwc_kernel(src_ptr, w_ptr, pre_ptr, acc_ptr, gate_ptr, post_ptr,
                        H, W, C, g_sb, g_sh, g_sw, scale,
                        K: tl.constexpr, EPILOGUE: tl.constexpr, FIRST: tl.constexpr,
                        STORE_POST: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """One (b, h) row, BLOCK_W columns, BLOCK_C channels; 'same' zero padding, stride 1.

    EPILOGUE: also write pre, apply GELU, gate and accumulate into acc (else write pre only).
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
    for kh in tl.static_range(K):
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


@triton.jit
def _gate_gelu_bwd_kernel(grad_acc_ptr, pre_ptr, gate_ptr, grad_next_ptr, grad_next_bc_ptr,
                          grad_pre_ptr, grad_gate_ptr, P, HW, C, g_sp, gg_sp, scale,
                          HAS_NEXT: tl.constexpr, HAS_NEXT_BC: tl.constexpr,
                          BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """BLOCK_P pixels x BLOCK_C channels of one level's elementwise backward."""
    pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    chans = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    pix_ok = pix < P
    mask = pix_ok[:, None] & (chans < C)[None, :]
    offs = pix[:, None] * C + chans[None, :]
    grad_acc = tl.load(grad_acc_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    pre = tl.load(pre_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    gate = tl.load(gate_ptr + pix * g_sp, mask=pix_ok, other=0.0).to(tl.float32)
    cdf = 0.5 * (1.0 + tl.math.erf(pre * 0.7071067811865476))
    post = pre * cdf
    grad_post = grad_acc * (gate * scale)[:, None]
    if HAS_NEXT:
        grad_post += tl.load(grad_next_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_NEXT_BC:
        bc_offs = (pix // HW)[:, None] * C + chans[None, :]
        grad_post += tl.load(grad_next_bc_ptr + bc_offs, mask=mask, other=0.0)
    dgelu = cdf + pre * tl.exp(-0.5 * pre * pre) * 0.3989422804014327
    tl.store(grad_pre_ptr + offs, (grad_post * dgelu).to(grad_pre_ptr.dtype.element_ty), mask=mask)
    partial = tl.sum(grad_acc * post, axis=1) * scale
    tl.atomic_add(grad_gate_ptr + pix * gg_sp, partial, mask=pix_ok)


def _blocks(C: int, interpreted: bool):
    block_c = min(triton.next_power_of_2(C), 64 if interpreted else 128)
    block_w = 8 if interpreted else max(1, 2048 // block_c)
    return block_w, block_c


def _dwconv(src, weight_kkc, K, pre, acc=None, gate=None, scale=1.0, first=True, post=None):
    """Launch the depthwise kernel on (B, H, W, C) contiguous ``src``."""
    B, H, W, C = src.shape
    block_w, block_c = _blocks(C, src.device.type != 'cuda')
    block_w = min(block_w, triton.next_power_of_2(W))
    grid = (B * H, triton.cdiv(W, block_w), triton.cdiv(C, block_c))
    epilogue = acc is not None
    g_strides = gate.stride()[:3] if epilogue else (0, 0, 0)
    _dwconv_nhwc_kernel[grid](
        src, weight_kkc, pre, acc if epilogue else pre, gate if epilogue else pre,
        post if post is not None else pre, H, W, C, *g_strides, scale,
        K=K, EPILOGUE=epilogue, FIRST=first, STORE_POST=post is not None,
        BLOCK_W=block_w, BLOCK_C=block_c, num_warps=4)
    return pre


def _kkc(weight: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """(C, 1, K, K) -> (K*K, C) contiguous, optionally rotated 180 degrees (input gradient)."""
    w = weight[:, 0]
    if flip:
        w = w.flip((1, 2))
    return w.permute(1, 2, 0).reshape(-1, w.shape[0]).contiguous()


class _FocalContext(torch.autograd.Function):

    @staticmethod
    def forward(ctx, src, gates, scale, *weights):
        B, H, W, C = src.shape
        levels = len(weights)
        acc = torch.empty_like(src)
        pres = []
        x = src
        for level, weight in enumerate(weights):
            K = weight.shape[-1]
            pre = torch.empty_like(src)
            post = torch.empty_like(src)
            _dwconv(x, _kkc(weight), K, pre, acc=acc, gate=gates[..., level], scale=scale,
                    first=level == 0, post=post)
            pres.append(pre)
            x = post
        mean = x.float().mean((1, 2))  # (B, C) of the last level's GELU output
        glob = F.gelu(mean)
        acc.addcmul_((glob * scale).to(acc.dtype)[:, None, None, :], gates[..., levels:])
        ctx.scale = scale
        ctx.save_for_backward(src, gates, mean, *weights, *pres)
        return acc

    @staticmethod
    def backward(ctx, grad_acc):
        src, gates, mean = ctx.saved_tensors[:3]
        rest = ctx.saved_tensors[3:]
        levels = len(rest) // 2
        weights, pres = rest[:levels], rest[levels:]
        scale = ctx.scale
        grad_acc = grad_acc.contiguous()
        B, H, W, C = src.shape
        interpreted = src.device.type != 'cuda'
        grad_gates = torch.zeros(gates.shape, dtype=torch.float32, device=src.device)
        # global level: acc += scale * GELU(mean_hw(post_L)) * g_L
        glob = F.gelu(mean)
        g_last = gates[..., levels].float()
        grad_gates[..., levels] = scale * torch.einsum('bhwc,bc->bhw', grad_acc.float(), glob)
        grad_glob = scale * torch.einsum('bhwc,bhw->bc', grad_acc.float(), g_last)
        cdf = 0.5 * (1.0 + torch.erf(mean * _RSQRT2))
        dgelu = cdf + mean * torch.exp(-0.5 * mean * mean) * _RSQRT_2PI
        grad_next_bc = (grad_glob * dgelu / (H * W)).contiguous()  # into every pixel of post_L
        grad_weights = [None] * levels
        grad_next = None
        P = B * H * W
        block_p = 8 if interpreted else 32
        block_c = min(triton.next_power_of_2(C), 64 if interpreted else 128)
        for level in reversed(range(levels)):
            pre, weight = pres[level], weights[level]
            K = weight.shape[-1]
            grad_pre = torch.empty_like(pre)
            gate = gates[..., level]
            grid = (triton.cdiv(P, block_p), triton.cdiv(C, block_c))
            last = level == levels - 1
            _gate_gelu_bwd_kernel[grid](
                grad_acc, pre, gate, grad_next if grad_next is not None else pre,
                grad_next_bc if last else mean, grad_pre, grad_gates[..., level], P, H * W, C,
                gate.stride(2), grad_gates.stride(2), scale,
                HAS_NEXT=grad_next is not None, HAS_NEXT_BC=last,
                BLOCK_P=block_p, BLOCK_C=block_c, num_warps=4)
            level_src = src if level == 0 else F.gelu(pres[level - 1])
            nchw = lambda t: t.permute(0, 3, 1, 2)  # noqa: E731
            grad_weights[level] = torch.ops.aten.convolution_backward(
                nchw(grad_pre), nchw(level_src), weight, None, [1, 1], [K // 2, K // 2], [1, 1],
                False, [0, 0], C, [False, True, False])[1]
            if level > 0 or ctx.needs_input_grad[0]:
                grad_next = _dwconv(grad_pre, _kkc(weight, flip=True), K, torch.empty_like(pre))
            else:
                grad_next = None
        return (grad_next, grad_gates.to(gates.dtype), None, *grad_weights)


def focal_context_triton(src: torch.Tensor, gates: torch.Tensor, weights: List[torch.Tensor],
                         scale: float) -> torch.Tensor:
    """ctx_all (B, H, W, C) for ``src`` (B, H, W, C) contiguous and ``gates`` (B, H, W, L+1)."""
    if src.dim() != 4 or not src.is_contiguous():
        raise ValueError('focal_context_triton expects a contiguous (B, H, W, C) tensor.')
    B, H, W, _ = src.shape
    if gates.shape[:3] != src.shape[:3] or gates.shape[3] != len(weights) + 1:
        raise ValueError(f'gates {tuple(gates.shape)} do not match src {tuple(src.shape)} with '
                         f'{len(weights)} levels.')
    pix = gates.stride(2)
    if gates.stride(1) != W * pix or gates.stride(0) != H * W * pix:
        gates = gates.contiguous()  # the kernels address a pixel as base + pixel_index * stride
    return _FocalContext.apply(src, gates, float(scale), *weights)


__all__ = ['focal_context_triton']
