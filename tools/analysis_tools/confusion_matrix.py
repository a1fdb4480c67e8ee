"""Which classes does a detector confuse? mmdet's confusion matrix of test predictions, as a PNG
and printed.

    python tools/test.py CONFIG CHECKPOINT --out results.pkl
    python tools/analysis_tools/confusion_matrix.py CONFIG results.pkl SAVE_DIR [--score-thr 0.3]

mmdet's own tools/analysis_tools/confusion_matrix.py (its CLI and its computation, loaded from the
copy mmdet installs in mmdet/.mim): rows are ground-truth classes + background (missed objects
in the last column), columns predictions + background (false detections in the last row), each
row normalised to 100 %. SAVE_DIR/confusion_matrix.png is written.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # from a clone

from mmengine.config import DictAction  # noqa: E402

import focalnet_mm  # noqa: E402,F401  (compat fixes + registration before anything is built)
from focalnet_mm.checks.data_paths import DatasetNotFoundError, check_datasets  # noqa: E402
from focalnet_mm.checks.dataset_files import check_class_order  # noqa: E402
from focalnet_mm.config.loading import load_config  # noqa: E402
from focalnet_mm.scripts import load_script  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Confusion matrix of detection results')
    parser.add_argument('config', help='the test config the predictions were made with')
    parser.add_argument('prediction_path', help='the .pkl written by tools/test.py --out')
    parser.add_argument('save_dir', help='folder for confusion_matrix.png')
    parser.add_argument('--show', action='store_true', help='also show the figure in a window')
    parser.add_argument('--color-theme', default='plasma', help='matplotlib colour map')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='ignore detections scored below this')
    parser.add_argument('--tp-iou-thr', type=float, default=0.5,
                        help='IoU at which a detection matches a ground-truth box')
    parser.add_argument('--nms-iou-thr', type=float, default=None,
                        help='re-run NMS per class at this IoU (default: as predicted)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. test_dataloader.dataset.data_root=DIR')
    return parser.parse_args(argv)


def mmdet_confusion_matrix_module():
    """mmdet's tool as a module (mmdet installs its tools in mmdet/.mim/tools)."""
    import mmdet
    path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'analysis_tools',
                    'confusion_matrix.py')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} not found: this mmdet install has no tools; reinstall '
                                'mmdet 3.3 from PyPI (bash tools/setup_env.sh)')
    return load_script(path, 'mmdet_confusion_matrix')


def format_matrix(matrix, labels) -> str:
    """Row-normalised percentages as a text table (rows: ground truth, columns: predictions)."""
    width = max(8, max(len(label) for label in labels) + 1)
    lines = ['ground truth \\ prediction (% of each row)',
             ' ' * width + ''.join(f'{label[:width - 1]:>{width}}' for label in labels)]
    for label, row in zip(labels, matrix):
        total = row.sum()
        cells = ''.join(f'{100 * v / total:>{width}.0f}' if total else f'{"-":>{width}}' for v in row)
        lines.append(f'{label[:width - 1]:<{width}}{cells}')
    return '\n'.join(lines)


def main(argv=None):
    """Compute, plot and print; returns the (classes + 1)^2 matrix of counts."""
    args = parse_args(argv)
    try:
        if not osp.isfile(args.prediction_path):
            raise FileNotFoundError(f'{args.prediction_path} not found: write it with '
                                    'tools/test.py CONFIG CHECKPOINT --out results.pkl')
        cfg = load_config(args.config, args.cfg_options)
        if cfg.get('default_scope') != 'mmdet':
            raise ValueError(f'{args.config} is not a detection config (default_scope '
                             f'{cfg.get("default_scope")!r}); the confusion matrix is for mmdet results')
        check_datasets(cfg, ('test_dataloader', ))
        check_class_order(cfg, ('test_dataloader', ))  # the axes name the labels
        tool = mmdet_confusion_matrix_module()
    except (DatasetNotFoundError, FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    from mmdet.registry import DATASETS
    from mmengine.fileio import load
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    results = load(args.prediction_path)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    if len(results) != len(dataset):
        sys.exit(f'error: {args.prediction_path} holds {len(results)} predictions but the test set of '
                 f'{args.config} has {len(dataset)} images: use the config the predictions were made with')
    matrix = tool.calculate_confusion_matrix(dataset, results, args.score_thr, args.nms_iou_thr,
                                             args.tp_iou_thr)
    labels = tuple(dataset.metainfo['classes']) + ('background', )
    os.makedirs(args.save_dir, exist_ok=True)
    import matplotlib.pyplot as plt
    import numpy as np
    with np.errstate(invalid='ignore', divide='ignore'):  # classes absent from the set
        tool.plot_confusion_matrix(matrix, labels, save_dir=None, show=args.show,
                                   color_theme=args.color_theme)
    # mmdet sizes the figure at 0.5 inch per class: too small for the labels below ~12 classes
    figure = plt.gcf()
    width, height = figure.get_size_inches()
    figure.set_size_inches(max(width, 7.0), max(height, 6.0))
    figure.tight_layout()
    figure.savefig(osp.join(args.save_dir, 'confusion_matrix.png'), format='png')
    plt.close('all')
    print('\n' + format_matrix(matrix, labels))
    print(f'{osp.join(args.save_dir, "confusion_matrix.png")} written')
    return matrix


if __name__ == '__main__':
    main()
