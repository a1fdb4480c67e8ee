"""Focal modulation and the FocalNet block: the official function, channels-last tokens.

Tensors stay (B, H, W, C) through a block so every Linear and LayerNorm works on the last dim
with no permute; only the depthwise context convolutions see NCHW. State-dict keys match the
official code exactly (``f``, ``h``, ``proj``, ``focal_layers.{k}.0``, ``ln``, ``gamma_{1,2}``).

The module owns its forward; the context aggregation is a tensor op with three implementations
(:func:`focalnet_mm.ops.aggregate_context`), chosen by the module's ``impl`` (set by the backbone,
``FocalNet(impl=...)``).
"""
from typing import List

import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath

from ..ops.focal_context import aggregate_context, check_impl, resolve_impl


def focal_kernel_sizes(focal_level: int, focal_window: int, focal_factor: int = 2) -> List[int]:
    """Kernel of level k is ``focal_factor * k + focal_window`` (3 -> [3, 5, 7])."""
    return [focal_factor * k + focal_window for k in range(focal_level)]


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
        impl: context-aggregation implementation, 'auto', 'reference', 'fast' or 'triton'
            (attribute ``impl``; the backbone sets it, see ``set_focal_impl``).

    Hooks: ``h`` receives the aggregated context and returns the modulator, in every
    implementation; :meth:`modulator_and_gates` recomputes both on the reference path.
    """

    def __init__(self, dim: int, focal_window: int, focal_level: int, focal_factor: int = 2,
                 proj_drop: float = 0., use_postln_in_modulation: bool = False,
                 normalize_modulator: bool = False, impl: str = 'auto'):
        super().__init__()
        self.dim = dim
        self.focal_level = focal_level
        self.normalize_modulator = normalize_modulator
        self.kernel_sizes = focal_kernel_sizes(focal_level, focal_window, focal_factor)
        self.impl = check_impl(impl, 'FocalModulation(impl=...)')

        self.f = nn.Linear(dim, 2 * dim + focal_level + 1)
        self.h = nn.Conv2d(dim, dim, kernel_size=1)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.focal_layers = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(dim, dim, kernel_size=k, padding=k // 2, groups=dim, bias=False),
                nn.GELU()) for k in self.kernel_sizes)
        self.ln = nn.LayerNorm(dim) if use_postln_in_modulation else None

    def modulator_and_gates(self, x: torch.Tensor, impl: str = 'reference'):
        """(q, modulator, gates) as NCHW tensors (views of NHWC memory except on the reference
        path) for x (B, H, W, C); ``impl`` as in :func:`focalnet_mm.ops.aggregate_context`."""
        q, ctx, gates = torch.split(self.f(x), (self.dim, self.dim, self.focal_level + 1), -1)
        weights = [layer[0].weight for layer in self.focal_layers]
        ctx_all = aggregate_context(ctx, gates, weights, self.normalize_modulator, impl)
        return q.permute(0, 3, 1, 2), self.h(ctx_all), gates.permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        impl = self.impl
        if impl == 'auto' or impl == 'triton':
            training = torch.is_grad_enabled() and (x.requires_grad
                                                    or self.f.weight.requires_grad)
            impl = resolve_impl(impl, x, training, self.kernel_sizes[-1])
        q, modulator, _ = self.modulator_and_gates(x, impl)
        out = (q * modulator).permute(0, 2, 3, 1)
        if self.ln is not None:
            out = self.ln(out)
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return f'dim={self.dim}, kernel_sizes={self.kernel_sizes}, impl={self.impl!r}'


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
                 use_postln_in_modulation: bool = False, normalize_modulator: bool = False,
                 impl: str = 'auto'):
        super().__init__()
        self.use_postln = use_postln
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = FocalModulation(
            dim, focal_window=focal_window, focal_level=focal_level, proj_drop=drop,
            use_postln_in_modulation=use_postln_in_modulation,
            normalize_modulator=normalize_modulator, impl=impl)
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
