"""Figures of gate and modulator maps: one per image, and a contact sheet for several.

Drawn on bare ``matplotlib.figure.Figure`` objects with the Agg canvas (no pyplot state), so
the training hook can draw from any thread and on machines without a display. Layouts are
placed by hand, not with ``tight_layout``, so the PNG size depends only on the number of panels
and the image aspect ratio (which tests check).
"""
import math
from typing import List, Sequence

import mmcv
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .extraction import ModulationMaps

DPI = 100
#: per-image figure, inches: image width per panel, colorbar strip, title band, heading band
PANEL_WIDTH = 3.2
COLORBAR_SPACE = 0.75
TITLE_BAND = 0.3
ROW_GAP = 0.1
HEADING_BAND = 0.55
#: contact sheet cell, inches
SHEET_CELL = (2.2, 1.8)
OVERLAY_ALPHA = 0.55


def per_image_grid(num_panels: int):
    """(rows, cols): two rows, the image first, then each gate, then the modulator."""
    cols = math.ceil(num_panels / 2)
    return 2, cols


def per_image_size_px(num_panels: int, height: int, width: int):
    """(width, height) in pixels of the per-image PNG for an image of ``height`` x ``width``."""
    rows, cols = per_image_grid(num_panels)
    panel_height = PANEL_WIDTH * height / width
    fig_w = cols * (PANEL_WIDTH + COLORBAR_SPACE)
    fig_h = HEADING_BAND + rows * (TITLE_BAND + panel_height + ROW_GAP)
    return round(fig_w * DPI), round(fig_h * DPI)


def _heat_style(index: int, maps: ModulationMaps, values: np.ndarray):
    """Gates are signed (raw, a negative gate flips its context): diverging map centred at 0.
    The modulator magnitude: sequential map over its own range (where it is strong matters)."""
    if index < len(maps.gates):
        bound = float(np.abs(values).max()) or 1.0
        return dict(cmap='RdBu_r', vmin=-bound, vmax=bound)
    low, high = float(values.min()), float(values.max())
    return dict(cmap='inferno', vmin=low, vmax=high if high > low else low + 1.0)


def draw_modulation_figure(image: np.ndarray, maps: ModulationMaps, heading: str) -> Figure:
    """The image, then each gate map and the modulator magnitude overlaid on it, with colorbars.

    Args:
        image: RGB uint8 (H, W, 3), the exact input the maps were computed from.
        maps: maps at image resolution (H, W).
        heading: figure heading (image name, block, weights).
    """
    height, width = image.shape[:2]
    if tuple(maps.modulator.shape) != (height, width):
        raise ValueError(f'maps are {tuple(maps.modulator.shape)} but the image is '
                         f'{(height, width)}; compute the maps from this image.')
    heat = [m.numpy() for m in maps.maps()]
    titles = ['input'] + maps.titles
    rows, cols = per_image_grid(len(titles))
    size_w, size_h = per_image_size_px(len(titles), height, width)
    fig = Figure(figsize=(size_w / DPI, size_h / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    fig_w, fig_h = size_w / DPI, size_h / DPI
    panel_h = PANEL_WIDTH * height / width
    fig.text(0.5, 1 - HEADING_BAND / 2 / fig_h, heading, ha='center', va='center', fontsize=11)
    for index, title in enumerate(titles):
        row, col = divmod(index, cols)
        left = col * (PANEL_WIDTH + COLORBAR_SPACE) + 0.05
        top = HEADING_BAND + row * (TITLE_BAND + panel_h + ROW_GAP) + TITLE_BAND
        ax = fig.add_axes([left / fig_w, 1 - (top + panel_h) / fig_h,
                           (PANEL_WIDTH - 0.1) / fig_w, panel_h / fig_h])
        ax.imshow(image)
        ax.set_axis_off()
        if index:
            values = heat[index - 1]
            mappable = ax.imshow(values, alpha=OVERLAY_ALPHA, interpolation='bilinear',
                                 **_heat_style(index - 1, maps, values))
            cax = fig.add_axes([(left + PANEL_WIDTH - 0.02) / fig_w, 1 - (top + panel_h) / fig_h,
                                0.1 / fig_w, panel_h / fig_h])
            fig.colorbar(mappable, cax=cax).ax.tick_params(labelsize=7)
        ax.set_title(title, fontsize=10)
    return fig


def draw_contact_sheet(images: Sequence[np.ndarray], maps: Sequence[ModulationMaps],
                       names: Sequence[str], heading: str) -> Figure:
    """One row per image (input, gates, modulator), without colorbars: for comparing images."""
    if not images or len(images) != len(maps) or len(images) != len(names):
        raise ValueError('draw_contact_sheet needs as many maps and names as images '
                         '(at least one).')
    titles = ['input'] + maps[0].titles
    rows, cols = len(images), len(titles)
    cell_w, cell_h = SHEET_CELL
    fig = Figure(figsize=(cols * cell_w, rows * cell_h + HEADING_BAND), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.suptitle(heading, fontsize=11, y=1 - 0.25 / (rows * cell_h + HEADING_BAND))
    axes = fig.subplots(rows, cols, squeeze=False,
                        gridspec_kw=dict(left=0.03, right=0.99, bottom=0.01,
                                         top=1 - HEADING_BAND / (rows * cell_h + HEADING_BAND),
                                         wspace=0.04, hspace=0.12))
    for row, (image, image_maps, name) in enumerate(zip(images, maps, names)):
        for col in range(cols):
            ax = axes[row][col]
            ax.imshow(image)
            if col:
                values = image_maps.maps()[col - 1].numpy()
                ax.imshow(values, alpha=OVERLAY_ALPHA, interpolation='bilinear',
                          **_heat_style(col - 1, image_maps, values))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col], fontsize=8)
            if col == 0:
                ax.set_ylabel(name, fontsize=7)
    return fig


def figure_to_rgb(fig: Figure) -> np.ndarray:
    """RGB uint8 (H, W, 3) rendering of ``fig`` (for visualizer backends such as TensorBoard)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_rgb(image: np.ndarray, path: str) -> None:
    """Write an RGB rendering as PNG (one draw per figure: the array is what backends get too)."""
    if not mmcv.imwrite(np.ascontiguousarray(image[..., ::-1]), path):  # mmcv writes BGR
        raise OSError(f'could not write {path}; check that its folder is writable.')


__all__: List[str] = ['draw_modulation_figure', 'draw_contact_sheet', 'figure_to_rgb',
                      'save_rgb', 'per_image_size_px']
