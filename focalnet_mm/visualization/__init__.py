"""What focal modulation looks at: gate maps and modulator magnitude, offline and during training.

* :func:`extract_modulation_maps` / :func:`capture_modulation`: forward hooks (nothing stored on
  the modules) that read one block's L + 1 gates and ``|h(ctx_all)|`` at image resolution.
* :func:`render_modulation`: per-image figures and a contact sheet (used by
  ``tools/analysis_tools/visualize_modulation.py``).
* ``FocalModulationVisHook``: the same figures every few epochs/iterations during training,
  registered in mmengine's HOOKS and in mmdet / mmseg / mmpretrain HOOKS by
  ``import focalnet_mm`` (see focalnet_mm/registry.py).
"""
from .extraction import (ModulationMaps, capture_modulation, extract_modulation_maps, token_maps,
                         find_focalnet, resolve_block, stage_stride)
from .figures import (draw_contact_sheet, draw_modulation_figure, figure_to_rgb, per_image_size_px,
                      save_rgb)
from .hook import FocalModulationVisHook
from .inputs import Normalizer, list_images, load_rgb
from .render import RenderedImage, render_modulation

__all__ = ['ModulationMaps', 'capture_modulation', 'extract_modulation_maps', 'token_maps',
           'find_focalnet', 'resolve_block', 'stage_stride', 'draw_contact_sheet',
           'draw_modulation_figure', 'figure_to_rgb', 'per_image_size_px', 'save_rgb',
           'FocalModulationVisHook', 'Normalizer',
           'list_images', 'load_rgb', 'RenderedImage', 'render_modulation']
