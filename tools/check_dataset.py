"""Check a config's data sets before training: one table of problems, the first files of each
kind, histograms as PNG and the image_scale the templates should use (docs/custom_dataset.md).

    python tools/check_dataset.py configs/det/custom/my_set.py [--split train val test] \
        [--out work_dirs/my_set/check] [--decode]

Exit status 1 when training would crash or learn shifted labels (e.g. `classes` in another order
than the JSON's categories: the line to paste is printed), 0 otherwise (warnings only).
Images are checked by header and end marker; --decode decodes every image fully (slower).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without install

from mmengine.config import DictAction  # noqa: E402

import focalnet_mm  # noqa: E402,F401  (compat fixes + registration before anything is built)
from focalnet_mm.checks.data_paths import DatasetNotFoundError, check_datasets  # noqa: E402
from focalnet_mm.checks.dataset_files import (  # noqa: E402
    check_dataset,
    lazy_datasets,
    problem_lines,
    table,
    write_histograms,
)
from focalnet_mm.config.loading import load_config  # noqa: E402

SPLITS = {'train': 'train_dataloader', 'val': 'val_dataloader', 'test': 'test_dataloader'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Check the data sets of a config before training')
    parser.add_argument('config', help='a det / seg / cls config')
    parser.add_argument('--split', nargs='+', choices=list(SPLITS), default=list(SPLITS),
                        help='which dataloaders to check (default: all; a test set identical to '
                        'the val set is checked once)')
    parser.add_argument('--out', help='folder for the histogram PNGs (default: none written)')
    parser.add_argument('--decode', action='store_true',
                        help='decode every image fully (default: header and end marker only)')
    parser.add_argument('--nproc', type=int, default=os.cpu_count() or 1,
                        help='processes reading files (default: all cores)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. train_dataloader.dataset.data_root=DIR')
    return parser.parse_args(argv)


def datasets_of(cfg, splits):
    """(name, data set) of each leaf data set of the chosen dataloaders, built lazily as the
    Runner builds them; a config seen before (test = val) is skipped."""
    seen = []
    for split in splits:
        leaves = lazy_datasets(cfg, SPLITS[split])
        for i, (leaf, dataset) in enumerate(leaves):
            if leaf in seen:
                continue
            seen.append(leaf)
            yield (split if len(leaves) == 1 else f'{split}{i}'), dataset


def main(argv=None):
    """Check; returns the reports (exits 1 when training would crash)."""
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
        check_datasets(cfg, tuple(SPLITS[s] for s in args.split))
    except (DatasetNotFoundError, FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    reports = []
    for name, dataset in datasets_of(cfg, args.split):
        print(f'checking {name}: {type(dataset).__name__}', flush=True)
        reports.append(check_dataset(dataset, name, decode=args.decode, nproc=args.nproc))
    print(table(reports))
    for report in reports:
        for line in problem_lines(report):
            print(line)
    for report in reports:
        scale = report.image_scale()
        if scale and report.name.startswith('train'):
            print(f'{report.name}: median image {scale[0]}x{scale[1]} (long x short, rounded to '
                  f'32): image_scale = {scale} in the template')
        if args.out:
            for path in write_histograms(report, args.out):
                print(f'wrote {path}')
    if any(r.crashes for r in reports):
        sys.exit(1)
    return reports


if __name__ == '__main__':
    main()
