"""Write a small synthetic data set in the ADE20K layout, for the segmentation demo and tests.

    python tools/data/make_demo_ade.py                      # -> data/ade_demo/ADEChallengeData2016
    python tools/train.py configs/seg/demo/upernet_focalnet_t_srf_ade_demo.py

Layout (that of the real ADEChallengeData2016, so ``ADE20KDataset`` reads it unchanged)::

    OUT/ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_%08d.jpg
    OUT/ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_%08d.png

Each image is an outdoor scene drawn from a handful of ADE20K classes (sky, mountain, building,
road, grass, water, tree, car, person), every class a textured colour so that a small network can
learn it in a few hundred iterations. Label values are ADE20K's: 0 = "other" (ignored, as
``reduce_zero_label`` maps it to 255), class k of ``ADE20KDataset.METAINFO['classes']`` is k + 1.
The output depends only on the arguments (a seeded generator per image).
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict, Tuple

import numpy as np
from PIL import Image

#: ADE20K label values (1-based index into ADE20KDataset.METAINFO['classes']) and base colours
CLASSES: Dict[str, Tuple[int, Tuple[int, int, int]]] = {
    'building': (2, (150, 110, 90)),
    'sky': (3, (120, 170, 235)),
    'tree': (5, (40, 120, 40)),
    'road': (7, (90, 90, 95)),
    'grass': (10, (110, 190, 60)),
    'person': (13, (220, 60, 160)),
    'mountain': (17, (120, 95, 140)),
    'car': (21, (230, 200, 30)),
    'water': (22, (30, 80, 180)),
}
OTHER = 0  # ADE20K's unlabelled / "other" value
SPLITS = (('training', 'train'), ('validation', 'val'))


def draw_scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One label map (uint8, ADE20K values): sky, background, ground band, foreground objects."""
    ys, xs = np.mgrid[0:height, 0:width]
    label = np.full((height, width), CLASSES['sky'][0], np.uint8)
    horizon = int(height * rng.uniform(0.4, 0.6))

    if rng.random() < 0.5:  # a mountain ridge: piecewise-linear skyline above the horizon
        knots = rng.uniform(0.05, 0.35, size=5) * height
        skyline = horizon - np.interp(xs, np.linspace(0, width - 1, 5), knots)
        label[ys >= skyline] = CLASSES['mountain'][0]
    for _ in range(rng.integers(1, 4)):  # buildings standing on the horizon
        x0 = rng.integers(0, width - width // 6)
        bw, bh = rng.integers(width // 8, width // 3), rng.integers(height // 8, height // 3)
        label[horizon - bh:horizon, x0:x0 + bw] = CLASSES['building'][0]

    ground = rng.choice(['road', 'grass', 'water'])
    label[horizon:] = CLASSES[ground][0]
    if ground != 'water' and rng.random() < 0.7:  # a second ground class in a lower band
        other = 'grass' if ground == 'road' else 'road'
        label[horizon + (height - horizon) // 2:] = CLASSES[other][0]

    for _ in range(rng.integers(1, 5)):  # trees (discs), cars (boxes), people (upright ellipses)
        kind = rng.choice(['tree', 'car', 'person'])
        cx = rng.integers(0, width)
        cy = rng.integers(horizon - height // 10, height)
        size = rng.uniform(0.06, 0.16) * height
        if kind == 'tree':
            mask = (xs - cx) ** 2 + (ys - cy + size) ** 2 <= size ** 2
        elif kind == 'car':
            mask = (abs(xs - cx) <= 1.6 * size) & (abs(ys - cy) <= 0.7 * size)
        else:
            mask = ((xs - cx) / (0.4 * size)) ** 2 + ((ys - cy) / size) ** 2 <= 1
        label[mask] = CLASSES[kind][0]

    for _ in range(rng.integers(0, 3)):  # a few unlabelled blobs, as in real ADE20K annotations
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.uniform(2, 0.05 * height + 3)
        label[(xs - cx) ** 2 + (ys - cy) ** 2 <= r ** 2] = OTHER
    return label


def paint(rng: np.random.Generator, label: np.ndarray) -> np.ndarray:
    """RGB image for a label map: class colour, per-image brightness, texture and pixel noise."""
    image = np.full(label.shape + (3, ), 128, np.float32)  # "other" is mid grey
    ys, xs = np.mgrid[0:label.shape[0], 0:label.shape[1]]
    for name, (value, colour) in CLASSES.items():
        mask = label == value
        if not mask.any():
            continue
        texture = np.zeros(label.shape, np.float32)
        if name == 'building':  # window rows
            texture = 25.0 * ((ys // 3) % 2)
        elif name in ('road', 'water'):  # horizontal streaks
            texture = 12.0 * np.sin(ys * rng.uniform(0.5, 1.5))
        elif name in ('tree', 'grass'):  # speckle
            texture = rng.normal(0, 18, label.shape)
        image[mask] = np.asarray(colour, np.float32) + texture[mask, None]
    image *= rng.uniform(0.8, 1.2)  # lighting
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_split(root: str, split: str, stem: str, count: int, height: int, width: int,
                seed: int) -> None:
    img_dir = osp.join(root, 'images', split)
    ann_dir = osp.join(root, 'annotations', split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    for i in range(1, count + 1):
        # one generator per image: an image does not change when --train/--val counts change
        rng = np.random.default_rng([seed, 0 if stem == 'train' else 1, i])
        label = draw_scene(rng, height, width)
        name = f'ADE_{stem}_{i:08d}'
        Image.fromarray(paint(rng, label)).save(osp.join(img_dir, name + '.jpg'), quality=95)
        Image.fromarray(label, mode='L').save(osp.join(ann_dir, name + '.png'))


def make_demo_ade(out: str = 'data/ade_demo', num_train: int = 40, num_val: int = 10,
                  height: int = 128, width: int = 160, seed: int = 0) -> str:
    """Write the data set under ``out``; return its ADEChallengeData2016 directory."""
    if num_train < 1 or num_val < 1:
        raise ValueError('--train and --val must be at least 1')
    if min(height, width) < 32:
        raise ValueError('--height and --width must be at least 32 pixels')
    root = osp.join(out, 'ADEChallengeData2016')
    for (split, stem), count in zip(SPLITS, (num_train, num_val)):
        write_split(root, split, stem, count, height, width, seed)
    return root


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Write a small synthetic ADE20K-layout data set')
    parser.add_argument('--out', default='data/ade_demo',
                        help='output directory (ADEChallengeData2016/ is created inside)')
    parser.add_argument('--train', type=int, default=40, help='number of training images')
    parser.add_argument('--val', type=int, default=10, help='number of validation images')
    parser.add_argument('--height', type=int, default=128, help='image height in pixels')
    parser.add_argument('--width', type=int, default=160, help='image width in pixels')
    parser.add_argument('--seed', type=int, default=0, help='random seed (same seed, same files)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        root = make_demo_ade(args.out, args.train, args.val, args.height, args.width, args.seed)
    except ValueError as e:
        sys.exit(f'error: {e}')
    print(f'wrote {args.train} training and {args.val} validation images to {root}')


if __name__ == '__main__':
    main()
