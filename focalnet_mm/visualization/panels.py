"""Side-by-side pictures with named columns, e.g. mmdet's ground truth | prediction pairs."""
from typing import Sequence

import cv2
import numpy as np

WHITE, BLACK = 255, (0, 0, 0)


def heading_row(titles: Sequence[str], column_width: int, gap: int) -> np.ndarray:
    """A white RGB strip with each title centred over its column (shrunk to fit the column)."""
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    scale = 0.5
    for title in titles:  # one size for every title, the largest that fits each column
        text_width = cv2.getTextSize(title, font, scale, thickness)[0][0]
        if text_width > column_width - 8:
            scale *= (column_width - 8) / text_width
    height = int(cv2.getTextSize('Ag', font, scale, thickness)[0][1] * 2.2) + 6
    strip = np.full((height, len(titles) * (column_width + gap) - gap, 3), WHITE, np.uint8)
    for index, title in enumerate(titles):
        (text_width, text_height), _ = cv2.getTextSize(title, font, scale, thickness)
        x = index * (column_width + gap) + max(0, (column_width - text_width) // 2)
        cv2.putText(strip, title, (x, (height + text_height) // 2), font, scale, BLACK, thickness,
                    cv2.LINE_AA)
    return strip


def stack_labelled_columns(rows: Sequence[np.ndarray], titles: Sequence[str],
                           gap: int = 4) -> np.ndarray:
    """Stack RGB rows of ``len(titles)`` equal-width panels under a row naming the columns.

    Each row is split into ``len(titles)`` panels (mmdet's visualizers put the ground truth and
    the prediction of one image side by side at the same size); panels are padded with white to
    the widest one so that the columns line up, with ``gap`` white pixels between panels and rows.
    """
    if not rows:
        raise ValueError('stack_labelled_columns: no rows to stack')
    columns = len(titles)
    bad = [row.shape for row in rows if row.ndim != 3 or row.shape[1] % columns]
    if bad:
        raise ValueError(f'stack_labelled_columns: rows of shape {bad[0]} do not split into '
                         f'{columns} equal panels (one per title: {list(titles)})')
    width = max(row.shape[1] // columns for row in rows)
    stacked = []
    for row in rows:
        panels = np.split(row, columns, axis=1)
        padded = [np.pad(p, ((0, 0), (0, width - p.shape[1] + gap), (0, 0)), constant_values=WHITE)
                  for p in panels]
        stacked.append(np.pad(np.concatenate(padded, axis=1)[:, :-gap], ((0, gap), (0, 0), (0, 0)),
                              constant_values=WHITE))
    return np.concatenate([heading_row(titles, width, gap), *stacked])[:-gap]
