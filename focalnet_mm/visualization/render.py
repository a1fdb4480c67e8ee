"""Model + image files -> saved figures; shared by the offline tool and the training hook."""
import os.path as osp
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch.nn as nn
from mmengine.utils import ProgressBar, mkdir_or_exist

from ..weights.loading import unwrap_model
from .extraction import ModulationMaps, extract_modulation_maps, find_focalnet, resolve_block, stage_stride
from .figures import draw_contact_sheet, draw_modulation_figure, figure_to_rgb, save_rgb
from .inputs import Normalizer, load_rgb

CONTACT_SHEET_NAME = 'contact_sheet.png'
#: rows of the contact sheet (the first images); per-image PNGs are written for all
CONTACT_SHEET_MAX_ROWS = 12


@dataclass
class RenderedImage:
    name: str            # file stem, used in output names and titles
    image: np.ndarray    # RGB uint8 input as fed to the backbone (after resizing)
    maps: ModulationMaps
    figure: np.ndarray   # RGB uint8 rendering of the per-image figure (what the PNG holds)
    path: Optional[str]  # where the PNG was written


def unique_names(paths: Sequence[str]) -> List[str]:
    """File stems, numbered when two images share one, so no PNG overwrites another."""
    stems = [osp.splitext(osp.basename(p))[0] for p in paths]
    return [f'{s}_{i}' if stems.count(s) > 1 else s for i, s in enumerate(stems)]


def heading_for(name: str, maps: ModulationMaps, stride: int, weights: str) -> str:
    return (f'{name} - stage {maps.stage}, block {maps.block} (stride {stride}, '
            f'{len(maps.gates) - 1} focal levels) - {weights}')


def render_modulation(model: nn.Module, image_paths: Sequence[str], out_dir: Optional[str],
                      stage: Optional[int] = None, block: int = -1, short_side: Optional[int] = 512,
                      weights: str = 'random init', suffix: str = '', contact_sheet: bool = True,
                      progress: bool = False) -> List[RenderedImage]:
    """Per-image figures (and a contact sheet when there are several images) for ``model``.

    Args:
        model: a detector, segmentor or classifier with a FocalNet ``backbone`` (or the backbone);
            its ``data_preprocessor`` gives mean/std and channel order.
        image_paths: image files.
        out_dir: where PNGs go (``<stem><suffix>.png``, ``contact_sheet<suffix>.png``); None to
            only return the renderings.
        short_side: resize so the short side has this many pixels (None/0 keeps the size).
        weights: what the weights are, shown in every heading ('random init' or a file name).
    """
    backbone = find_focalnet(model)
    stage, block = resolve_block(backbone, stage, block)
    preprocessor = getattr(unwrap_model(model), 'data_preprocessor', None)
    normalize = (Normalizer.from_data_preprocessor(preprocessor) if preprocessor is not None
                 else Normalizer(None, None, to_rgb=True))
    if out_dir:
        mkdir_or_exist(out_dir)
    stride = stage_stride(backbone, stage)
    bar = ProgressBar(len(image_paths)) if progress else None
    rendered = []
    names = unique_names(image_paths)
    for path, name in zip(image_paths, names):
        image = load_rgb(path, short_side)
        maps = extract_modulation_maps(backbone, normalize(image), stage, block)
        fig = draw_modulation_figure(image, maps, heading_for(name, maps, stride, weights))
        figure = figure_to_rgb(fig)
        out_path = osp.join(out_dir, f'{name}{suffix}.png') if out_dir else None
        if out_path:
            save_rgb(figure, out_path)
        rendered.append(RenderedImage(name, image, maps, figure, out_path))
        if bar is not None:
            bar.update()
    if out_dir and contact_sheet and len(rendered) > 1:
        rows = rendered[:CONTACT_SHEET_MAX_ROWS]
        shown = ('' if len(rows) == len(rendered)
                 else f', first {len(rows)} of {len(rendered)} images')
        sheet = draw_contact_sheet([r.image for r in rows], [r.maps for r in rows],
                                   [r.name for r in rows],
                                   f'stage {stage}, block {block} (stride {stride}) - '
                                   f'{weights}{shown}')
        stem, ext = osp.splitext(CONTACT_SHEET_NAME)
        save_rgb(figure_to_rgb(sheet), osp.join(out_dir, f'{stem}{suffix}{ext}'))
    if bar is not None:
        sys.stdout.write('\n')
    return rendered
