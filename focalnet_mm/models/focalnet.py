"""FocalNet backbone for MMDetection / MMSegmentation / MMPretrain (OpenMMLab 2.x).

The official det/seg backbone behaviour, one module: pad to the patch size and to even size
before each downsample, return the pre-downsample map of every requested stage through its own
LayerNorm ``norm{i}`` as NCHW. State-dict keys are the official layout plus ``norm{i}``.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch.nn.modules.batchnorm import _BatchNorm

from .. import compat
from ..archs import ARCHS, resolve_arch
from ..ops.focal_context import check_impl, log_once, requested_impl
from .focal_modulation import FocalModulation, FocalNetBlock


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad an NCHW map on the right/bottom so H and W are multiples of ``multiple``."""
    pad_h = (multiple - x.shape[2] % multiple) % multiple
    pad_w = (multiple - x.shape[3] % multiple) % multiple
    # traced (ONNX export): sizes are tensors and the graph pads by them, whatever the traced size
    if torch.jit.is_tracing() or pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return x


class PatchEmbed(nn.Module):
    """Stem (``is_stem``) or downsample: conv + LayerNorm, NCHW in, (B, H, W, C) out.

    Non-overlapping: kernel = stride = patch size. ``use_conv_embed``: 7x7 stride 4 padding 2
    for the stem (the classification weights' padding; the official det code's 3 shifts the grid)
    and 3x3 stride 2 padding 1 for downsampling.
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int,
                 use_conv_embed: bool = False, is_stem: bool = True):
        super().__init__()
        self.patch_size = patch_size
        if use_conv_embed:
            kernel, stride, padding = (7, 4, 2) if is_stem else (3, 2, 1)
        else:
            kernel, stride, padding = patch_size, patch_size, 0
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel, stride, padding)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(pad_to_multiple(x, self.patch_size))
        return self.norm(x.permute(0, 2, 3, 1))


class FocalNetStage(nn.Module):
    """Blocks of one stage, then (except for the last stage) a 2x downsample."""

    def __init__(self, dim: int, depth: int, out_dim: Optional[int], drop_paths: Sequence[float],
                 use_conv_embed: bool, with_cp: bool, **block_kwargs):
        super().__init__()
        self.with_cp = with_cp
        self.blocks = nn.ModuleList(
            FocalNetBlock(dim, drop_path=dp, **block_kwargs) for dp in drop_paths)
        self.downsample = None if out_dim is None else PatchEmbed(
            dim, out_dim, patch_size=2, use_conv_embed=use_conv_embed, is_stem=False)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, H, W, C) -> (stage output before downsampling, downsampled input of next stage)."""
        # No x.requires_grad condition: behind a frozen stem the first block's input needs no
        # gradient, yet its activations are what checkpointing is meant to drop.
        checkpointing = self.with_cp and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if checkpointing:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        down = None if self.downsample is None else self.downsample(x.permute(0, 3, 1, 2))
        return x, down


class FocalNet(BaseModule):
    """FocalNet backbone (Focal Modulation Networks, Yang et al., NeurIPS 2022).

    Keyword names follow the official configs so their ``backbone=dict(...)`` can be copied.
    A preset (``arch``) fills every architecture keyword left as None; an explicit keyword
    overrides it (detection configs set ``focal_windows=[9, 9, 9, 9]``).

    Args:
        arch: preset name (see ``ARCHS``) or a dict of architecture keywords.
        in_channels: input image channels.
        patch_size: stem patch size (4; 16 for the isotropic models).
        embed_dim: channels of stage 0; stage i has ``embed_dim * 2**i``.
        depths: blocks per stage.
        focal_levels / focal_windows: int or one value per stage.
        use_conv_embed: overlapping conv stem/downsample (large, xlarge, huge).
        use_layerscale / layerscale_value: learnable ``gamma_1``/``gamma_2``.
        use_postln: norm after each residual branch instead of before.
        use_postln_in_modulation: LayerNorm ``modulation.ln`` before ``proj``.
        normalize_modulator: divide the aggregated context by L + 1.
        mlp_ratio: MLP hidden size over channels.
        drop_rate: dropout after the stem, in the MLP and after ``proj``.
        drop_path_rate: stochastic depth, linear from 0 over all blocks.
        out_indices: stages whose (pre-downsample) maps are returned, each through ``norm{i}``.
        frozen_stages: -1 none; 0 the stem; k >= 1 the stem and stages 0..k-1 with their
            ``norm{i}`` (mmdet 3.x Swin semantics), re-applied by ``train()``.
        norm_eval: keep normalization layers in eval mode during training. FocalNet itself has
            only LayerNorms (no running statistics), so this matters for BatchNorm layers only.
        with_cp: activation checkpointing of every block (non-reentrant, so a frozen stem still
            lets gradients reach the blocks): a bool for all stages or one bool per stage, e.g.
            ``(False, False, True, False)`` for the 18-block stage of L/XL/H only.
        impl: focal-context implementation of every block: 'auto' (per device, dtype, training
            or inference, from ``focalnet_mm.ops.AUTO_TABLE``), 'reference', 'fast' or 'triton'.
            None (default): the ``FOCALNET_IMPL`` environment variable if set, else 'auto'; the
            environment is read here, once, and the choice is logged once.
        pretrained: shorthand for ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``.
        init_cfg: mmengine init config; ``Pretrained`` is loaded by :mod:`focalnet_mm.weights`
            (``checkpoint`` may be ``focalnet://<preset>``; an optional ``weights_dir`` names an
            offline folder searched before any download).
        **official_aliases: the official config spellings ``in_chans``, ``use_checkpoint`` and
            ``patch_norm=True`` are accepted (conflicting double spellings are an error).
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny_srf',
                 in_channels: int = 3,
                 patch_size: Optional[int] = None,
                 embed_dim: Optional[int] = None,
                 depths: Optional[Sequence[int]] = None,
                 focal_levels: Union[int, Sequence[int], None] = None,
                 focal_windows: Union[int, Sequence[int], None] = None,
                 use_conv_embed: Optional[bool] = None,
                 use_layerscale: Optional[bool] = None,
                 layerscale_value: float = 1e-4,
                 use_postln: Optional[bool] = None,
                 use_postln_in_modulation: Optional[bool] = None,
                 normalize_modulator: Optional[bool] = None,
                 mlp_ratio: float = 4.0,
                 drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: Union[bool, Sequence[bool]] = False,
                 impl: Optional[str] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None,
                 **official_aliases):
        in_channels, with_cp = self._accept_official_aliases(official_aliases, in_channels, with_cp)
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('Set either pretrained=... or init_cfg=dict(type="Pretrained", ...) '
                                 'on FocalNet, not both.')
            if not isinstance(pretrained, str):
                raise TypeError('FocalNet pretrained= must be a checkpoint path or URL string.')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        compat.log_applied()  # once per process, into the run's log (the Runner built it first)

        cfg = resolve_arch(
            arch, patch_size=patch_size, embed_dim=embed_dim, depths=depths,
            focal_levels=focal_levels, focal_windows=focal_windows, use_conv_embed=use_conv_embed,
            use_layerscale=use_layerscale, use_postln=use_postln,
            use_postln_in_modulation=use_postln_in_modulation,
            normalize_modulator=normalize_modulator)
        self.arch = arch if isinstance(arch, str) else 'custom'
        self.arch_settings = cfg
        depths = list(cfg['depths'])
        num_stages = len(depths)
        levels = self._per_stage('focal_levels', cfg['focal_levels'], num_stages)
        windows = self._per_stage('focal_windows', cfg['focal_windows'], num_stages)
        out_indices = tuple(out_indices)
        bad = [i for i in out_indices if not 0 <= i < num_stages]
        if bad or not out_indices:
            raise ValueError(f'FocalNet out_indices {out_indices} out of range for a {num_stages}-stage '
                             f'model (arch {self.arch!r}); use indices in 0..{num_stages - 1}, '
                             f'e.g. out_indices={tuple(range(num_stages))}.')
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'FocalNet frozen_stages={frozen_stages} out of range; use -1 (none), '
                             f'0 (stem) up to {num_stages} (stem and all stages).')

        self.in_channels = in_channels
        self.num_stages = num_stages
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        cp_stages = self._per_stage_with_cp(with_cp, num_stages)
        self.with_cp = with_cp if isinstance(with_cp, bool) else cp_stages  # stages[i].with_cp rules
        self.impl, why = requested_impl(impl)
        log_once(f'FocalNet impl {self.impl!r} (from {why})'
                 + ('; auto picks per device, dtype and training/inference, each pick logged once'
                    if self.impl == 'auto' else ''))
        self.num_features = [cfg['embed_dim'] * 2**i for i in range(num_stages)]
        self.focal_levels, self.focal_windows = levels, windows

        self.patch_embed = PatchEmbed(in_channels, self.num_features[0], cfg['patch_size'],
                                      use_conv_embed=cfg['use_conv_embed'], is_stem=True)
        self.pos_drop = nn.Dropout(drop_rate)
        total = sum(depths)  # linear stochastic-depth rule; plain Python so meta-device builds work
        drop_paths = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            self.layers.append(FocalNetStage(
                dim=self.num_features[i], depth=depth,
                out_dim=self.num_features[i + 1] if i < num_stages - 1 else None,
                drop_paths=drop_paths[sum(depths[:i]):sum(depths[:i + 1])],
                use_conv_embed=cfg['use_conv_embed'], with_cp=cp_stages[i],
                mlp_ratio=mlp_ratio, drop=drop_rate, focal_level=levels[i], focal_window=windows[i],
                use_layerscale=cfg['use_layerscale'], layerscale_value=layerscale_value,
                use_postln=cfg['use_postln'],
                use_postln_in_modulation=cfg['use_postln_in_modulation'],
                normalize_modulator=cfg['normalize_modulator'], impl=self.impl))
        for i in out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.num_features[i]))
        self._freeze_stages()

    @staticmethod
    def _accept_official_aliases(aliases, in_channels, with_cp):
        """Accept the official det/seg config spellings (in_chans, use_checkpoint, patch_norm)."""
        aliases = dict(aliases)
        resolved = {}
        for alias, name, value, default in (('in_chans', 'in_channels', in_channels, 3),
                                            ('use_checkpoint', 'with_cp', with_cp, False)):
            if alias in aliases and value != default and aliases[alias] != value:
                raise ValueError(f'FocalNet got {name}={value!r} and its official spelling '
                                 f'{alias}={aliases[alias]!r}; give only one of them.')
            resolved[name] = aliases.pop(alias, value)
        in_channels, with_cp = resolved['in_channels'], resolved['with_cp']
        if not aliases.pop('patch_norm', True):
            raise ValueError('FocalNet always normalizes the patch embedding (every released '
                             'checkpoint has patch_embed.norm); remove patch_norm=False.')
        if aliases:
            raise TypeError(f'FocalNet got unexpected keyword(s) {sorted(aliases)}; see '
                            'help(focalnet_mm.FocalNet) for the accepted arguments.')
        return in_channels, with_cp

    @staticmethod
    def _per_stage_with_cp(with_cp, num_stages) -> Tuple[bool, ...]:
        if isinstance(with_cp, bool):
            return (with_cp, ) * num_stages
        values = tuple(with_cp) if isinstance(with_cp, (list, tuple)) else None
        if values is None or len(values) != num_stages or not all(isinstance(v, bool) for v in values):
            raise ValueError(f'FocalNet with_cp={with_cp!r}: give a bool or {num_stages} bools (one per '
                             f'stage), e.g. with_cp={(False, ) * (num_stages - 1) + (True, )}.')
        return values

    @staticmethod
    def _per_stage(name, value, num_stages):
        values = [value] * num_stages if isinstance(value, int) else list(value)
        if len(values) != num_stages:
            raise ValueError(f'FocalNet {name}={list(values)} has {len(values)} entries but the model '
                             f'has {num_stages} stages; give one value per stage or a single int.')
        return values

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        # the channel count is not compared while tracing: no input-dependent fact of the traced
        # graph (its first convolution fixes it), and comparing traced sizes in Python only warns
        if x.dim() != 4 or (not torch.jit.is_tracing() and x.shape[1] != self.in_channels):
            raise ValueError(f'FocalNet expects NCHW input with {self.in_channels} channels, got shape '
                             f'{tuple(x.shape)}; set in_channels={x.shape[1] if x.dim() == 4 else "?"} '
                             'on the backbone or fix the data pipeline.')
        x = self.pos_drop(self.patch_embed(x))
        outs = []
        for i, stage in enumerate(self.layers):
            feat, x = stage(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(feat).permute(0, 3, 1, 2).contiguous())
        return tuple(outs)

    # ------------------------------------------------------------------ training state
    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            self._freeze(self.patch_embed)
            self.pos_drop.eval()  # the stem's dropout belongs to the frozen stem (as in mmdet Swin)
        for i in range(self.frozen_stages):
            self._freeze(self.layers[i])
            if i in self.out_indices:
                self._freeze(getattr(self, f'norm{i}'))

    @staticmethod
    def _freeze(module: nn.Module):
        module.eval()
        for param in module.parameters():
            param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, (_BatchNorm, nn.LayerNorm, nn.GroupNorm)):
                    m.eval()
        return self

    # ------------------------------------------------------------------ weights
    def init_weights(self):
        """Official init (trunc-normal Linear, unit LayerNorm), or load ``init_cfg`` Pretrained."""
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            from ..weights import load_pretrained
            load_pretrained(self, self.init_cfg['checkpoint'], prefix=self.init_cfg.get('prefix'),
                            map_location=self.init_cfg.get('map_location', 'cpu'),
                            weights_dir=self.init_cfg.get('weights_dir'))
            self._freeze_stages()
            self._is_init = True
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.LayerNorm):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0)
        super().init_weights()


def set_focal_impl(model: nn.Module, impl: str) -> nn.Module:
    """Set ``impl`` on every :class:`FocalModulation` inside ``model`` (and on a FocalNet's own
    ``impl``); returns ``model``."""
    check_impl(impl, 'set_focal_impl()')
    found = 0
    for module in model.modules():
        if isinstance(module, FocalModulation):
            module.impl = impl
            found += 1
        elif isinstance(module, FocalNet):
            module.impl = impl  # the backbone's record of its choice
    if not found:
        raise ValueError(f'set_focal_impl found no FocalModulation inside {type(model).__name__}.')
    return model


__all__ = ['FocalNet', 'ARCHS', 'set_focal_impl']
