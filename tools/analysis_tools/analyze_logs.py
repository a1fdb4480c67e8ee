"""Training curves as PNG and training-time statistics from the logs tools/train.py writes.

mmdet's analyze_logs.py command line (``plot_curve`` / ``cal_train_time``), for detection,
segmentation and classification runs alike, epoch- or iteration-based:

    python tools/analysis_tools/analyze_logs.py plot_curve work_dirs/maskrcnn_focalnet_t_3x \
        --keys loss coco/bbox_mAP --out work_dirs/maskrcnn_focalnet_t_3x/curves.png
    python tools/analysis_tools/analyze_logs.py cal_train_time work_dirs/maskrcnn_focalnet_t_3x

LOG is a run's ``vis_data/scalars.json`` (or the ``<timestamp>.json`` beside its log) or a work
dir, where the newest run with training records is used. Without ``--keys`` the plot shows
``loss`` and every validation metric the run logged (coco/bbox_mAP, mIoU, accuracy/top1, ...).
"""
import argparse
import glob
import json
import os.path as osp
import sys

import numpy as np

#: keys mmengine writes into every record that are bookkeeping, not curves
BOOKKEEPING = {'epoch', 'iter', 'step', 'time', 'data_time', 'memory'}


class LogError(ValueError):
    """Bad input, reported as one line by main()."""


def has_training_records(path):
    with open(path) as f:
        return any('"loss"' in line or '"lr"' in line for line in f)


def find_scalars(path):
    """The scalars file for ``path``: itself, or the newest run inside a work dir."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise LogError(f'{path} does not exist; give a work dir or its <timestamp>/vis_data/'
                       'scalars.json written by tools/train.py')
    runs = sorted(glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')), reverse=True)
    runs = [run for run in runs if has_training_records(run)]  # skip tools/test.py runs
    if not runs:
        raise LogError(f'no training run under {path} (looked for */vis_data/scalars.json with '
                       'loss records); give the scalars.json of the run to plot')
    return runs[0]


def load_log(path):
    """(train records, val records) of one scalars file; each record a dict of numbers."""
    train, val = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise LogError(f'{path} line {number} is not JSON ({e.msg}); give the '
                               'vis_data/scalars.json of a run, not its .log text file') from None
            (train if 'iter' in record else val).append(record)
    if not train and not val:
        raise LogError(f'{path} holds no records; was the run started with tools/train.py?')
    return train, val


def val_x(train, val):
    """x positions (training iteration) of validation records; their ``step`` is the epoch in
    epoch-based runs and the iteration in iteration-based ones."""
    epoch_end = {}
    for record in train:
        if 'epoch' in record:
            epoch_end[record['epoch']] = max(epoch_end.get(record['epoch'], 0), record['iter'])
    if epoch_end and all(record['step'] in epoch_end for record in val):
        # epoch-based: place epoch k's evaluation at the last logged iteration of epoch k
        return [epoch_end[record['step']] for record in val]
    return [record['step'] for record in val]


def available_keys(train, val):
    keys = {k for record in train + val for k, v in record.items() if isinstance(v, (int, float))}
    return sorted(keys - BOOKKEEPING)


def default_keys(train, val):
    metrics = [k for k in available_keys([], val)]
    return (['loss'] if any('loss' in r for r in train) else []) + metrics


def curve(train, val, key):
    """(x, y) for ``key``: training iterations for train keys, evaluation points for metrics."""
    for records, xs in ((train, [r['iter'] for r in train]), (val, val_x(train, val))):
        points = [(x, r[key]) for x, r in zip(xs, records) if key in r]
        if points:
            return np.array(points, dtype=float).T
    return None


def plot_curve(logs, keys, legend, title, out, dpi=120):
    """One panel per key, one line per log; writes ``out`` (PNG unless its suffix says otherwise)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    loaded = [(name, *load_log(find_scalars(name))) for name in logs]
    if keys is None:
        keys = list(dict.fromkeys(k for _, train, val in loaded for k in default_keys(train, val)))
        if not keys:
            raise LogError('the logs hold neither loss nor validation metrics; pass --keys')
    if legend is not None and len(legend) != len(logs):
        raise LogError(f'--legend needs one name per log ({len(logs)}), got {len(legend)}')
    names = legend or [osp.basename(osp.normpath(name)) for name in logs]
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 2.8 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        drawn = 0
        for name, (_, train, val) in zip(names, loaded):
            points = curve(train, val, key)
            if points is None:
                continue
            marker = 'o' if len(points[0]) < 30 else None
            ax.plot(points[0], points[1], marker=marker, markersize=3, label=name)
            drawn += 1
        if not drawn:
            found = sorted({k for _, train, val in loaded for k in available_keys(train, val)})
            raise LogError(f'no log has the key {key!r}; available: {", ".join(found)}')
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if len(logs) > 1:
            ax.legend()
    axes[-1, 0].set_xlabel('iteration')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return keys


def train_time(path, include_outliers=False):
    """Seconds per iteration by epoch (epoch-based) or for the whole run; mmdet's statistics."""
    train, _ = load_log(find_scalars(path))
    groups = {}
    for record in train:
        if 'time' in record:
            groups.setdefault(record.get('epoch', 1), []).append(record['time'])
    if not groups:
        raise LogError(f'{path} has no "time" entries; set default_hooks.logger.interval smaller '
                       'than an epoch so iterations are logged')
    # the first logged window of each epoch includes start-up (data workers, cudnn autotuning)
    means = {e: float(np.mean(t if include_outliers or len(t) == 1 else t[1:]))
             for e, t in groups.items()}
    values = np.array(list(means.values()))
    epochs = list(means)
    return dict(slowest_epoch=epochs[int(values.argmax())], slowest=float(values.max()),
                fastest_epoch=epochs[int(values.argmin())], fastest=float(values.min()),
                std=float(values.std()), average=float(values.mean()))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Analyze training logs (curves, training time)')
    sub = parser.add_subparsers(dest='task', required=True)
    plot = sub.add_parser('plot_curve', help='plot keys of one or more logs to a PNG')
    plot.add_argument('json_logs', nargs='+', help='scalars.json files or work dirs')
    plot.add_argument('--keys', nargs='+', help='keys to plot (default: loss + validation metrics)')
    plot.add_argument('--title', help='figure title')
    plot.add_argument('--legend', nargs='+', help='one name per log (default: file/dir names)')
    plot.add_argument('--out', default='curves.png', help='output image (default curves.png)')
    timing = sub.add_parser('cal_train_time', help='seconds per iteration statistics')
    timing.add_argument('json_logs', nargs='+', help='scalars.json files or work dirs')
    timing.add_argument('--include-outliers', action='store_true',
                        help='keep the first logged window of each epoch')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.task == 'plot_curve':
            keys = plot_curve(args.json_logs, args.keys, args.legend, args.title, args.out)
            print(f'plotted {", ".join(keys)} of {len(args.json_logs)} log(s) to {args.out}')
            return args.out
        stats = {}
        for log in args.json_logs:
            s = stats[log] = train_time(log, args.include_outliers)
            print(f'-----Analyze train time of {log}-----')
            print(f'slowest epoch {s["slowest_epoch"]}, average time is {s["slowest"]:.4f} s/iter')
            print(f'fastest epoch {s["fastest_epoch"]}, average time is {s["fastest"]:.4f} s/iter')
            print(f'time std over epochs is {s["std"]:.4f}')
            print(f'average iter time: {s["average"]:.4f} s/iter\n')
        return stats
    except LogError as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
