"""What focal modulation looks at: gate maps and modulator magnitude, offline and during training.

* :func:`extract_modulation_maps` / :func:`capture_modulation`: forward hooks (nothing stored on
  the modules) that read one block's L + 1 gates and ``|h(ctx_all)|`` at image resolution.
* :func:`render_modulation`: per-image figures and a contact sheet (used by
  ``tools/analysis_tools/visualize_modulation.py``).
* :func:`stack_labelled_columns`: side-by-side panels (ground truth | prediction) under a row
  naming the columns (the demo's ``predictions.png``).
* ``FocalModulationVisHook``: the same figures every few epochs/iterations during training,
  registered in mmengine's HOOKS and in mmdet / mmseg / mmpretrain HOOKS by
  ``import focalnet_mm`` (see focalnet_mm/registry.py).
"""
import importlib

from .extraction import (
    ModulationMaps,
    capture_modulation,
    extract_modulation_maps,
    find_focalnet,
    resolve_block,
    stage_stride,
    token_maps,
)
from .hook import FocalModulationVisHook
from .inputs import Normalizer, list_images, load_rgb
from .panels import stack_labelled_columns

#: drawing needs matplotlib (about a second to import): its names load on first access, so that
#: ``import focalnet_mm`` (which registers the hook) does not pay for it
_LAZY = {name: 'figures' for name in ('draw_contact_sheet', 'draw_modulation_figure',
                                      'figure_to_rgb', 'per_image_size_px', 'save_rgb')}
_LAZY.update({name: 'render' for name in ('RenderedImage', 'render_modulation')})


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f'.{_LAZY[name]}', __name__), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['ModulationMaps', 'capture_modulation', 'extract_modulation_maps', 'token_maps',
           'find_focalnet', 'resolve_block', 'stage_stride', 'draw_contact_sheet',
           'draw_modulation_figure', 'figure_to_rgb', 'per_image_size_px', 'save_rgb',
           'FocalModulationVisHook', 'Normalizer',
           'list_images', 'load_rgb', 'RenderedImage', 'render_modulation', 'stack_labelled_columns']
