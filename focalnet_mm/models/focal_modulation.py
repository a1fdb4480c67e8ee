"""Focal modulation and the FocalNet block: the official function, channels-last tokens.

Tensors stay (B, H, W, C) through a block so every Linear and LayerNorm works on the last dim
with no permute; only the depthwise context convolutions see NCHW. State-dict keys match the
official code exactly (``f``, ``h``, ``proj``, ``focal_layers.{k}.0``, ``ln``, ``gamma_{1,2}``).

``FocalModulation.forward`` dispatches to a faster formulation of the same function on CUDA
(:mod:`focalnet_mm.ops.focal_context`; ``FOCALNET_IMPL=reference|fast|triton|auto``); the
code below is the reference path, the CPU default.
"""
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath

from ..ops.focal_context import focal_modulation_channels_last, resolve_impl


def focal_kernel_sizes(focal_level: int, focal_window: int, focal_factor: int = 2) -> List[int]:
    """Kernel of level k is ``focal_factor * k + focal_window`` (3 -> [3, 5, 7])."""
    return [focal_factor * k + focal_window for k in range(focal_level)]


def aggregate_context(ctx: torch.Tensor, gates: torch.Tensor, focal_layers: nn.ModuleList,
                      normalize_modulator: bool) -> torch.Tensor:
    """Reference hierarchical context aggregation (NCHW), exactly the official loop.

    Levels are sequential: level k convolves level k-1's output. The global context is the
    GELU of the spatial mean of the last level, gated by the last gate channel.
    """
    focal_level = len(focal_layers)
    ctx_all = 0
    for level, layer in enumerate(focal_layers):
        ctx = layer(ctx)
        ctx_all = ctx_all + ctx * gates[:, level:level + 1]
    ctx_global = F.gelu(ctx.mean((2, 3), keepdim=True))
    ctx_all = ctx_all + ctx_global * gates[:, focal_level:]
    if normalize_modulator:
        ctx_all = ctx_all / (focal_level + 1)
    return ctx_all


class FocalModulation(nn.Module):
    """Focal modulation: ``proj(q * h(sum_l gate_l * ctx_l + gate_g * ctx_global))``.

    Args:
        dim: channels C.
        focal_window: kernel size of the first level.
        focal_level: number of levels L (the global level is extra).
        focal_factor: kernel growth per level.
        proj_drop: dropout after ``proj``.
        use_postln_in_modulation: LayerNorm ``ln`` before ``proj`` (huge and base-iso models).
        normalize_modulator: divide the aggregated context by L + 1.

    Attribute ``impl`` (None, 'auto', 'reference', 'fast', 'triton') pins the implementation of
    this module; None follows ``focalnet_mm.ops.set_impl`` / ``FOCALNET_IMPL`` / auto.
    """

    def __init__(self, dim: int, focal_window: int, focal_level: int, focal_factor: int = 2,
                 proj_drop: float = 0., use_postln_in_modulation: bool = False,
                 normalize_modulator: bool = False):
        super().__init__()
        self.dim = dim
        self.focal_level = focal_level
        self.normalize_modulator = normalize_modulator
        self.kernel_sizes = focal_kernel_sizes(focal_level, focal_window, focal_factor)

        self.f = nn.Linear(dim, 2 * dim + focal_level + 1)
        self.h = nn.Conv2d(dim, dim, kernel_size=1)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.focal_layers = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(dim, dim, kernel_size=k, padding=k // 2, groups=dim, bias=False),
                nn.GELU()) for k in self.kernel_sizes)
        self.ln = nn.LayerNorm(dim) if use_postln_in_modulation else None
        self.impl: Optional[str] = None

    def modulator_and_gates(self, x: torch.Tensor):
        """Returns (q, modulator, gates), all NCHW, for x of shape (B, H, W, C).

        Split out so visualisation hooks and fast kernels share one definition.
        """
        y = self.f(x).permute(0, 3, 1, 2)
        q, ctx, gates = torch.split(y, (self.dim, self.dim, self.focal_level + 1), 1)
        ctx_all = aggregate_context(ctx.contiguous(), gates, self.focal_layers,
                                    self.normalize_modulator)
        return q, self.h(ctx_all), gates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or self.f.weight.requires_grad)
        impl = resolve_impl(self.impl, x, needs_grad)
        if impl != 'reference' and 'modulator_and_gates' not in self.__dict__:
            # an instance-patched modulator_and_gates (a visualisation tap) keeps the reference
            return focal_modulation_channels_last(self, x, impl)
        q, modulator, _ = self.modulator_and_gates(x)
        out = (q * modulator).permute(0, 2, 3, 1)
        if self.ln is not None:
            out = self.ln(out)
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return f'dim={self.dim}, kernel_sizes={self.kernel_sizes}'


class Mlp(nn.Module):
    """Linear -> GELU (exact) -> Linear, with dropout; keys ``fc1``/``fc2`` as in the official code."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class FocalNetBlock(nn.Module):
    """Pre-norm (or post-norm with ``use_postln``) focal modulation + MLP block on (B, H, W, C).

    With ``use_postln`` the same ``norm1``/``norm2`` modules are applied after the branch instead
    of before it (the official key names do not change, which is why a post-LN checkpoint loads
    silently into a pre-LN model: the weights loader checks the flag, not the keys).
    """

    def __init__(self, dim: int, mlp_ratio: float = 4., drop: float = 0., drop_path: float = 0.,
                 focal_level: int = 2, focal_window: int = 3, use_layerscale: bool = False,
                 layerscale_value: float = 1e-4, use_postln: bool = False,
                 use_postln_in_modulation: bool = False, normalize_modulator: bool = False):
        super().__init__()
        self.use_postln = use_postln
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = FocalModulation(
            dim, focal_window=focal_window, focal_level=focal_level, proj_drop=drop,
            use_postln_in_modulation=use_postln_in_modulation,
            normalize_modulator=normalize_modulator)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        if use_layerscale:
            self.gamma_1 = nn.Parameter(layerscale_value * torch.ones(dim))
            self.gamma_2 = nn.Parameter(layerscale_value * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def _scale(self, x, gamma):
        return x if gamma is None else gamma * x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_postln:
            x = x + self.drop_path(self._scale(self.norm1(self.modulation(x)), self.gamma_1))
            x = x + self.drop_path(self._scale(self.norm2(self.mlp(x)), self.gamma_2))
        else:
            x = x + self.drop_path(self._scale(self.modulation(self.norm1(x)), self.gamma_1))
            x = x + self.drop_path(self._scale(self.mlp(self.norm2(x)), self.gamma_2))
        return x
