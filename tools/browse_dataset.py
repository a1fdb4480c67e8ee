"""Look at what the model will be trained on: the training pipeline's images with their boxes and
masks (detection), label maps (segmentation) or labels (classification) painted, as PNG files.

    python tools/browse_dataset.py configs/det/custom/maskrcnn_focalnet_t_custom.py --out work_dirs/browse
    python tools/browse_dataset.py configs/seg/custom/upernet_focalnet_t_custom.py --out DIR --max 0

mmdet's and mmseg's tools/analysis_tools/browse_dataset.py (and mmpretrain's, in its plain mode)
for every task here: the config's train_dataloader dataset, augmentations included, drawn by the
library's own visualizer with the dataset's classes and palette.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without install

from mmengine.config import DictAction  # noqa: E402

import focalnet_mm  # noqa: E402,F401  (compat fixes + registration before anything is built)
from focalnet_mm.checks.data_paths import DatasetNotFoundError, check_datasets  # noqa: E402
from focalnet_mm.checks.dataset_files import check_class_order  # noqa: E402
from focalnet_mm.config.loading import load_config  # noqa: E402

SCOPES = ('mmdet', 'mmseg', 'mmpretrain')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Paint the training pipeline output of a dataset')
    parser.add_argument('config', help='a det / seg / cls config')
    parser.add_argument('--out', required=True, help='folder for the painted PNG files')
    parser.add_argument('--max', type=int, default=50,
                        help='paint the first N samples (default 50; 0 paints them all)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. train_dataloader.dataset.data_root=DIR')
    args = parser.parse_args(argv)
    if args.max < 0:
        parser.error('--max must be >= 0 (0 paints every sample)')
    return args


def build(cfg):
    """The train dataset and the library's visualizer (its own instance: visualizers are
    process-wide objects looked up by name)."""
    from mmengine.registry import DATASETS, VISUALIZERS, init_default_scope
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(f'default_scope {scope!r}; use a config from configs/det, configs/seg or '
                         'configs/cls (mmdet, mmseg or mmpretrain)')
    init_default_scope(scope)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    visualizer_cfg = dict(cfg.visualizer, name=f'focalnet_browse_{scope}')
    visualizer_cfg.pop('vis_backends', None)  # files are written here, not through backends
    visualizer_cfg.pop('save_dir', None)
    visualizer = VISUALIZERS.build(visualizer_cfg)
    visualizer.dataset_meta = dataset.metainfo
    return scope, dataset, visualizer


def paint(scope, visualizer, item, out_file):
    """One pipeline output (``inputs`` CHW BGR tensor + ``data_samples``) painted to ``out_file``."""
    image = item['inputs'].permute(1, 2, 0).numpy()[..., ::-1].copy()  # BGR -> RGB
    sample = item['data_samples']
    if scope == 'mmdet':
        from mmdet.models.utils import mask2ndarray
        from mmdet.structures.bbox import BaseBoxes
        sample = sample.numpy()
        gt = sample.gt_instances
        if isinstance(gt.get('bboxes'), BaseBoxes):
            gt.bboxes = gt.bboxes.tensor
        if gt.get('masks') is not None:
            gt.masks = mask2ndarray(gt.masks).astype(bool)
        visualizer.add_datasample('sample', image, sample, draw_pred=False, out_file=out_file)
    elif scope == 'mmseg':
        visualizer.add_datasample('sample', image, sample.numpy(), draw_gt=True, draw_pred=False,
                                  out_file=out_file)
    else:
        visualizer.visualize_cls(image, sample, draw_gt=True, draw_pred=False, out_file=out_file)


def main(argv=None):
    """Paint the samples; returns the list of PNG files written."""
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
        check_datasets(cfg, ('train_dataloader', ))
        check_class_order(cfg, ('train_dataloader', ))  # never paint a label with another's name
        scope, dataset, visualizer = build(cfg)
    except (DatasetNotFoundError, FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    from mmengine.utils import ProgressBar
    count = len(dataset) if args.max == 0 else min(args.max, len(dataset))
    os.makedirs(args.out, exist_ok=True)
    written = []
    progress = ProgressBar(count)
    for index in range(count):
        item = dataset[index]
        name = osp.splitext(osp.basename(item['data_samples'].get('img_path') or 'sample'))[0]
        out_file = osp.join(args.out, f'{index:04d}_{name}.png')
        paint(scope, visualizer, item, out_file)
        written.append(out_file)
        progress.update()
    print(f'\n{count} of {len(dataset)} training samples painted in {args.out}/')
    return written


if __name__ == '__main__':
    main()
