"""Read gate and modulator maps out of a FocalNet forward pass with forward hooks.

Nothing is stored on the modules (the official classification code keeps them as attributes,
which costs memory in every training step and breaks ``torch.compile``): a temporary forward
hook on one ``FocalModulation`` receives its input and recomputes ``(q, modulator, gates)``
with :meth:`FocalModulation.modulator_and_gates` under ``no_grad``, which is exact and cheap.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.focal_modulation import FocalModulation
from ..models.focalnet import FocalNet
from ..weights.loading import unwrap_model


@dataclass
class ModulationMaps:
    """The maps of one image at one block, already at image resolution.

    Attributes:
        gates: (L + 1, H, W) raw gate values (no softmax/sigmoid, as in the model);
            rows 0..L-1 gate the local levels, row L gates the global context.
        modulator: (H, W) channel-wise L2 norm of the modulator ``h(ctx_all)``.
        kernel_sizes: depthwise kernel of each local level (for titles).
        stage, block: where the maps were taken (non-negative indices).
    """
    gates: torch.Tensor
    modulator: torch.Tensor
    kernel_sizes: List[int]
    stage: int
    block: int

    @property
    def titles(self) -> List[str]:
        """One title per map, gates first, in the order of :meth:`maps`."""
        titles = [f'gate level {k + 1} ({size}x{size})' for k, size in enumerate(self.kernel_sizes)]
        return titles + ['gate global', 'modulator |h(ctx)|']

    def maps(self) -> List[torch.Tensor]:
        return [*self.gates, self.modulator]


def find_focalnet(model: nn.Module) -> FocalNet:
    """The FocalNet of a detector/segmentor/classifier (``model.backbone``), or the backbone."""
    model = unwrap_model(model)
    backbone = model if isinstance(model, FocalNet) else getattr(model, 'backbone', None)
    if not isinstance(backbone, FocalNet):
        found = type(backbone).__name__ if backbone is not None else 'no model.backbone'
        raise TypeError(f'Modulation maps need a FocalNet backbone but the model has {found}; '
                        "use a config whose model.backbone has type='FocalNet'.")
    return backbone


def resolve_block(backbone: FocalNet, stage: Optional[int] = None,
                  block: int = -1) -> Tuple[int, int]:
    """Non-negative (stage, block); stage None picks stage 2 (stride 16) or the last one.

    Negative indices count from the end, as in Python.
    """
    num_stages = len(backbone.layers)
    if stage is None:
        stage = min(2, num_stages - 1)
    if not -num_stages <= stage < num_stages:
        raise ValueError(f'stage={stage} out of range: this FocalNet has {num_stages} stages '
                         f'(use 0..{num_stages - 1}).')
    stage %= num_stages
    depth = len(backbone.layers[stage].blocks)
    if not -depth <= block < depth:
        raise ValueError(f'block={block} out of range: stage {stage} has {depth} blocks '
                         f'(use 0..{depth - 1}, or -1 for the last).')
    return stage, block % depth


def stage_stride(backbone: FocalNet, stage: int) -> int:
    """Input pixels per token of ``stage``: the stem patch, then x2 per downsample."""
    return backbone.patch_embed.patch_size * 2**stage


@contextmanager
def capture_modulation(
        module: FocalModulation) -> Iterator[List[Tuple[torch.Tensor, torch.Tensor]]]:
    """Record ``(gates, modulator_norm)`` (NCHW, N1HW, on CPU) for every forward of ``module``.

    The hook is removed when the ``with`` block ends, even on error.
    """
    if not isinstance(module, FocalModulation):
        raise TypeError(f'capture_modulation needs a FocalModulation, got {type(module).__name__}.')
    records: List[Tuple[torch.Tensor, torch.Tensor]] = []

    def record(mod, inputs, output):
        with torch.no_grad():
            _, modulator, gates = mod.modulator_and_gates(inputs[0])
            records.append((gates.float().cpu(),
                            modulator.float().norm(dim=1, keepdim=True).cpu()))

    handle = module.register_forward_hook(record)
    try:
        yield records
    finally:
        handle.remove()


@torch.no_grad()
def token_maps(backbone: FocalNet, image: torch.Tensor, stage: int,
               block: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(gates (L+1, h, w), modulator norm (h, w)) on the stage's token grid for one image.

    Runs the backbone in eval mode and restores its previous mode afterwards.
    """
    if image.dim() != 3:
        raise ValueError(f'expected one (3, H, W) image, got shape {tuple(image.shape)}.')
    modulation = backbone.layers[stage].blocks[block].modulation
    param = next(backbone.parameters())
    was_training = backbone.training
    backbone.eval()
    try:
        with capture_modulation(modulation) as records:
            backbone(image[None].to(device=param.device, dtype=param.dtype))
    finally:
        backbone.train(was_training)
    if len(records) != 1:
        raise RuntimeError(f'expected one forward through stage {stage} block {block}, '
                           f'saw {len(records)}; is the backbone called more than once?')
    gates, modulator = records[0]
    return gates[0], modulator[0, 0]


def extract_modulation_maps(backbone: FocalNet, image: torch.Tensor, stage: Optional[int] = None,
                            block: int = -1) -> ModulationMaps:
    """Gate and modulator maps of one normalized image (3, H, W) at ``layers[stage].blocks[block]``.

    One image per forward, so no batch padding reaches the global context. The token grid of
    the stage covers the (padded) input from the top-left corner, ``stride`` pixels per token:
    maps are upsampled bilinearly to that padded size and cropped back to (H, W).
    """
    stage, block = resolve_block(backbone, stage, block)
    gates, modulator = token_maps(backbone, image, stage, block)
    height, width = image.shape[1:]
    stride = stage_stride(backbone, stage)
    maps = torch.cat([gates, modulator[None]])[None]
    padded = (maps.shape[2] * stride, maps.shape[3] * stride)
    maps = F.interpolate(maps, size=padded, mode='bilinear', align_corners=False)
    maps = maps[0, :, :height, :width]
    kernel_sizes = list(backbone.layers[stage].blocks[block].modulation.kernel_sizes)
    return ModulationMaps(gates=maps[:-1], modulator=maps[-1], kernel_sizes=kernel_sizes,
                          stage=stage, block=block)
