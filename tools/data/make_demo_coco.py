"""Generate a small COCO-format instance-segmentation data set of simple shapes (the demo data).

Circles, rectangles and triangles in random colours on textured backgrounds, with polygon masks,
boxes and areas exactly as COCO stores them, so every mmdet COCO tool (CocoDataset, CocoMetric,
browse_dataset) reads it unchanged. Deterministic for a given seed; 240 images take a few seconds.

    python tools/data/make_demo_coco.py                       # -> data/demo_coco/
    python tools/data/make_demo_coco.py --out DIR --num-train 400 --seed 1

Layout (what configs/demo/*.py expect):

    DIR/annotations/instances_{train,val}.json
    DIR/{train,val}/000000.jpg ...
"""
import argparse
import json
import os
import os.path as osp
import time

import cv2
import numpy as np

CLASSES = ('circle', 'rectangle', 'triangle')
#: bumped whenever the drawing changes, so tools/run_demo.py regenerates stale data
GENERATOR_VERSION = '2'
PALETTE = [(220, 20, 60), (0, 130, 200), (60, 180, 75)]


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth colour field + fine grain + (sometimes) faint stripes: not a flat colour, so the
    network has to learn shapes, yet easy enough to learn from scratch in a few hundred steps."""
    low = rng.uniform(60, 195, size=(rng.integers(2, 5), rng.integers(2, 5), 3)).astype(np.float32)
    img = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.3:
        period = rng.uniform(6, 20)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:height, 0:width]
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
        img += (rng.uniform(5, 15) * np.sin(phase))[..., None]
    img += rng.normal(0, 5, size=img.shape)
    return img


def shape_polygon(rng: np.random.Generator, name: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Vertices (N, 2) of a shape of "radius" r centred at (cx, cy)."""
    if name == 'circle':
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
    if name == 'rectangle':
        w, h = r * rng.uniform(0.6, 1.0), r * rng.uniform(0.35, 0.8)
        a = rng.uniform(0, np.pi)
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
    else:  # triangle: equilateral-ish, randomly rotated, never degenerate
        t = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3 + rng.uniform(-0.25, 0.25, 3)
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return corners @ rot.T + [cx, cy]


def polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def make_image(rng, height, width, max_objects):
    """One image and its objects [(class index, polygon)], objects never overlapping."""
    img = textured_background(rng, height, width)
    occupied = np.zeros((height, width), np.uint8)
    objects = []
    for _ in range(rng.integers(1, max_objects + 1)):
        for _attempt in range(20):
            label = int(rng.integers(len(CLASSES)))
            r = rng.uniform(0.12, 0.3) * min(height, width)
            cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
            poly = np.clip(shape_polygon(rng, CLASSES[label], cx, cy, r), 0, [width - 1, height - 1])
            mask = np.zeros_like(occupied)
            cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
            if not (mask & cv2.dilate(occupied, np.ones((5, 5), np.uint8))).any():
                break
        else:
            continue  # image is full
        occupied |= mask
        # contrasting with the background under the object, channel by channel
        under = img[mask > 0].mean(0)
        colour = np.where(under > 128, under - rng.uniform(70, 120, 3), under + rng.uniform(70, 120, 3))
        shade = rng.normal(0, 6, size=img.shape)  # a little texture on the object too
        img = np.where(mask[..., None] > 0, colour + shade, img)
        objects.append((label, poly))
    return np.clip(img, 0, 255).astype(np.uint8), objects


def make_split(out_dir, split, num_images, rng, size, max_objects, info, start_ann_id=1):
    """Write the images of one split; return its COCO dict."""
    os.makedirs(osp.join(out_dir, split), exist_ok=True)
    images, annotations = [], []
    ann_id = start_ann_id
    for image_id in range(1, num_images + 1):
        # mildly varying sizes and aspect ratios, as in COCO (exercises AspectRatioBatchSampler)
        height = int(size * rng.uniform(0.8, 1.0))
        width = int(size * rng.uniform(0.8, 1.25))
        img, objects = make_image(rng, height, width, max_objects)
        file_name = f'{image_id:06d}.jpg'
        cv2.imwrite(osp.join(out_dir, split, file_name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append(dict(id=image_id, file_name=file_name, height=height, width=width))
        for label, poly in objects:
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            annotations.append(dict(
                id=ann_id, image_id=image_id, category_id=label + 1, iscrowd=0,
                segmentation=[[round(float(v), 2) for v in poly.reshape(-1)]],
                area=round(polygon_area(poly), 2),
                bbox=[round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)]))
            ann_id += 1
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(CLASSES)]
    return dict(info=dict(info, description=f'focalnet-mm demo shapes ({split})'),
                licenses=[], images=images, annotations=annotations, categories=categories)


def generator_info(num_train, num_val, size, max_objects, seed):
    """What the annotation files record about how they were made (COCO ``info``)."""
    return dict(version=GENERATOR_VERSION, num_train=num_train, num_val=num_val, size=size,
                max_objects=max_objects, seed=seed)


def make_demo_coco(out_dir='data/demo_coco', num_train=200, num_val=40, size=160, max_objects=3,
                   seed=0):
    """Write the data set to ``out_dir``; returns {split: (num images, num objects)}."""
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    info = generator_info(num_train, num_val, size, max_objects, seed)
    summary = {}
    for split, num in (('train', num_train), ('val', num_val)):
        coco = make_split(out_dir, split, num, rng, size, max_objects, info)
        with open(osp.join(out_dir, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(coco, f)
        summary[split] = (len(coco['images']), len(coco['annotations']))
    return summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/demo_coco', help='output directory')
    parser.add_argument('--num-train', type=int, default=200, help='training images')
    parser.add_argument('--num-val', type=int, default=40, help='validation images')
    parser.add_argument('--size', type=int, default=160, help='longest image side is about 1.25x this')
    parser.add_argument('--max-objects', type=int, default=3, help='objects per image (1..N)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.num_train, args.num_val, args.max_objects) < 1 or args.size < 64:
        parser.error('--num-train, --num-val and --max-objects must be >= 1 and --size >= 64')
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    summary = make_demo_coco(args.out, args.num_train, args.num_val, args.size, args.max_objects,
                             args.seed)
    counts = ', '.join(f'{split}: {n} images / {k} objects' for split, (n, k) in summary.items())
    print(f'demo COCO data set ({", ".join(CLASSES)}) written to {args.out} in '
          f'{time.time() - start:.1f}s ({counts})')


if __name__ == '__main__':
    main()
