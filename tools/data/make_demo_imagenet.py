"""Write a tiny synthetic data set in the ImageNet layout, for demos and tests of the cls configs.

    python tools/data/make_demo_imagenet.py                      # -> data/demo_imagenet/
    python tools/data/make_demo_imagenet.py --out DIR --classes 10 --size 32

Layout (what MMPretrain's ``ImageNet`` and ``CustomDataset`` read, and torchvision's ImageFolder):

    DIR/train/<wnid>/<wnid>_<i>.JPEG     DIR/val/<wnid>/<wnid>_val_<i>.JPEG
    DIR/meta/train.txt, DIR/meta/val.txt  ("<wnid>/<file> <label>" lines, labels 0..classes-1)

Class k is a striped texture at angle k*180/classes with a class tint, random phase and
frequency and pixel noise: learnable in a few iterations, never identical images.
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np
from PIL import Image


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Write a tiny ImageNet-layout data set')
    parser.add_argument('--out', default='data/demo_imagenet',
                        help='output folder (created; existing train/ or val/ in it are refused)')
    parser.add_argument('--classes', type=int, default=4, help='number of classes (>= 2)')
    parser.add_argument('--train-per-class', type=int, default=8, help='training images per class')
    parser.add_argument('--val-per-class', type=int, default=4, help='validation images per class')
    parser.add_argument('--size', type=int, default=64, help='image side in pixels (>= 8)')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    args = parser.parse_args(argv)
    if args.classes < 2:
        parser.error('--classes must be at least 2')
    if args.size < 8:
        parser.error('--size must be at least 8 pixels')
    if args.train_per_class < 1 or args.val_per_class < 1:
        parser.error('--train-per-class and --val-per-class must be at least 1')
    return args


def class_image(rng: np.random.Generator, label: int, num_classes: int, size: int) -> np.ndarray:
    """One RGB uint8 image of class ``label``: oriented stripes + class tint + noise."""
    angle = np.pi * label / num_classes
    freq = rng.uniform(3.0, 5.0) * 2 * np.pi / size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    wave = np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    tint = 0.5 + 0.5 * np.cos(2 * np.pi * (label / num_classes + np.array([0.0, 1 / 3, 2 / 3])))
    img = 0.5 + 0.35 * wave[..., None] * (0.4 + 0.6 * tint) + rng.normal(0, 0.05, (size, size, 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_dataset(out_dir, classes=4, train_per_class=8, val_per_class=4, size=64, seed=0):
    """Write the data set; returns {split: number of images}."""
    for split in ('train', 'val'):
        if osp.exists(osp.join(out_dir, split)):
            raise FileExistsError(f'{osp.join(out_dir, split)} exists; pass --out with a new '
                                  'folder or delete that one first.')
    rng = np.random.default_rng(seed)
    wnids = [f'n{k:08d}' for k in range(classes)]
    os.makedirs(osp.join(out_dir, 'meta'), exist_ok=True)
    counts = {}
    for split, per_class in (('train', train_per_class), ('val', val_per_class)):
        lines = []
        for label, wnid in enumerate(wnids):
            os.makedirs(osp.join(out_dir, split, wnid))
            for i in range(per_class):
                name = f'{wnid}_{i}.JPEG' if split == 'train' else f'{wnid}_val_{i}.JPEG'
                Image.fromarray(class_image(rng, label, classes, size)).save(
                    osp.join(out_dir, split, wnid, name), quality=95)
                lines.append(f'{wnid}/{name} {label}')
        with open(osp.join(out_dir, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        counts[split] = len(lines)
    return counts


def main(argv=None):
    args = parse_args(argv)
    try:
        counts = write_dataset(args.out, args.classes, args.train_per_class,
                               args.val_per_class, args.size, args.seed)
    except FileExistsError as e:
        sys.exit(f'error: {e}')
    print(f'wrote {counts["train"]} training and {counts["val"]} validation images '
          f'({args.classes} classes, {args.size}x{args.size}) to {args.out}')


if __name__ == '__main__':
    main()
