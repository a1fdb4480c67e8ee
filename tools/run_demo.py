"""The README main job, end to end on CPU: demo data -> train FocalNet-T Mask R-CNN -> COCO mAP.

    python tools/run_demo.py            # 64 images, 3 epochs of 32 iterations, mAP after each
    python tools/run_demo.py --full     # 200 images, 3 epochs of 100 iterations, higher mAP

Times on 2 CPU cores, setup excluded, and the mAP over several runs: docs/benchmarks.md (the
README gives one line). From scratch on 96 iterations the first epochs' mAP is near noise level
while the training loss falls from ~3.5 to ~2; --full reaches box/mask mAP about 0.16-0.20 / 0.25.

1. generates the synthetic COCO-format data set (tools/data/make_demo_coco.py) unless present,
2. trains configs/demo/maskrcnn_focalnet_t_demo.py as tools/train.py does (mmengine's log shows
   progress, loss and ETA), evaluating with CocoMetric (bbox + segm) after every epoch, so box and
   mask mAP are in the log and in the curves after each epoch,
3. draws the curves (loss, lr, mAP) and validation images with their true and predicted boxes
   and masks side by side as PNG, and prints the mAP and mean training loss of each epoch, how
   long each phase took, and where the pictures, logs and checkpoints are.
"""
import argparse
import contextlib
import io
import json
import os
import os.path as osp
import re
import sys
import time
import warnings

ROOT = osp.dirname(osp.dirname(osp.realpath(__file__)))
#: run from an installed package (focalnet_mm/.mim/tools, `focalnet-mm run-demo`): data and
#: outputs go to the current folder, not into site-packages
INSTALLED = osp.basename(ROOT) == '.mim'
if not INSTALLED:
    sys.path.insert(0, ROOT)  # run from a clone without install

from mmengine.hooks import Hook  # noqa: E402

from focalnet_mm.runner_building import build_runner_from_cfg  # noqa: E402
from focalnet_mm.scripts import load_script  # noqa: E402

CONFIG = osp.join('configs', 'demo', 'maskrcnn_focalnet_t_demo.py')
IMAGE_SIZE, MAX_OBJECTS = 160, 3  # demo images about as large as the config's training scale
NUM_PICTURES = 4  # validation images in predictions.png


def load_tool(relative_path, name):
    """Another tool as a module, to run its main() in this process."""
    return load_script(osp.join(ROOT, relative_path), name)


def recorded_info(data_root):
    """The generator settings stored in existing demo annotations (None when absent)."""
    infos = []
    for split in ('train', 'val'):
        path = osp.join(data_root, 'annotations', f'instances_{split}.json')
        if not osp.isfile(path):
            return None
        with open(path) as f:
            infos.append({k: v for k, v in json.load(f).get('info', {}).items() if k != 'description'})
    return infos[0] if infos[0] == infos[1] else None


def shown(path):
    """Repository-relative when inside the clone (what the README commands use), else absolute."""
    path = osp.abspath(path)
    return osp.relpath(path, ROOT) if path.startswith(ROOT + os.sep) and not INSTALLED else path


class ProgressConsole(io.TextIOBase):
    """The demo's console while it trains: progress, losses, mAP, warnings and errors.

    mmengine's Runner logs the system environment (with "GPU number", its count of processes),
    the whole config (about 500 lines), the hook order and one line per parameter-group option
    to the console as well as to the log file; pycocotools prints status lines each time it reads
    annotations, and a 12-line AP/AR table per metric each evaluation (the ``Epoch(val)`` record
    after it carries the same mAPs). Those are left out here: the records stay in the log file,
    and the config in the work dir. Each log record reaches the stream in one write.
    """
    SETUP_RECORD = re.compile(r'INFO\S* - (\n-+\nSystem environment:|Config:\n|Hooks will be '
                              r'executed in the following order|paramwise_options -- )')
    COCO_API_STATUS = re.compile(r'(loading annotations into memory|Done \(t=|DONE \(t=|creating '
                                 r'index\.\.\.|index created!|Loading and preparing results|Running '
                                 r'per image evaluation|Evaluate annotation type|Accumulating '
                                 r'evaluation results| Average (Precision|Recall) +\(A[PR]\) @)')

    def __init__(self, stream):
        self.stream, self.pending = stream, ''

    def writable(self):
        return True

    def write(self, text):
        if self.SETUP_RECORD.search(text[:200]):
            return len(text)
        *lines, self.pending = (self.pending + text).split('\n')
        kept = [line for line in lines if not self.COCO_API_STATUS.match(line)]
        if kept:
            self.stream.write('\n'.join(kept) + '\n')
        return len(text)

    def flush(self):
        if self.pending:
            self.stream.write(self.pending)
            self.pending = ''
        self.stream.flush()


@contextlib.contextmanager
def progress_console():
    """``sys.stdout`` is a :class:`ProgressConsole` within the block; mmengine's logger keeps the
    stream it found when the Runner created it, so build the runner inside."""
    stdout = sys.stdout
    sys.stdout = ProgressConsole(stdout)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = stdout


#: (training images, validation images, epochs) of the default run and of --full
QUICK = dict(num_train=64, num_val=24, epochs=3)
FULL = dict(num_train=200, num_val=40, epochs=3)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--full', action='store_true',
                        help='the longer run: %(num_train)d training / %(num_val)d validation images, '
                        '%(epochs)d epochs (higher mAP, about 3x the time)' % FULL)
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'maskrcnn_focalnet_t_demo'))
    parser.add_argument('--data-root', default=osp.join('data', 'demo_coco'))
    parser.add_argument('--epochs', type=int, help='training epochs (default: %(epochs)d)' % QUICK)
    parser.add_argument('--num-train', type=int,
                        help='demo training images (default: %(num_train)d)' % QUICK)
    parser.add_argument('--num-val', type=int,
                        help='demo validation images (default: %(num_val)d)' % QUICK)
    parser.add_argument('--seed', type=int, default=0, help='data generation seed')
    parser.add_argument('--threads', type=int,
                        help='CPU threads for torch (default: one per core; on a machine shared with '
                        'other jobs 1 is often faster, as idle-waiting threads stall each op)')
    args = parser.parse_args(argv)
    for key, value in (FULL if args.full else QUICK).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.epochs, args.num_train, args.num_val) < 1:
        parser.error('--epochs, --num-train and --num-val must be at least 1')
    return args


class PhaseTimer(Hook):
    """Splits the training phase into training and validation time; keeps each evaluation and
    each epoch's mean training loss (the loss falls steadily where a few dozen iterations from
    scratch leave the first epochs' mAP at noise level)."""

    def __init__(self):
        self.validation_s, self.evaluations, self.epoch_losses = 0.0, [], {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if outputs and 'loss' in outputs:  # the loss tensor still holds its graph: detach
            loss = outputs['loss']
            loss = loss.detach() if hasattr(loss, 'detach') else loss
            self.epoch_losses.setdefault(runner.epoch, []).append(float(loss))

    def before_val_epoch(self, runner):
        self._start = time.time()

    def after_val_epoch(self, runner, metrics=None):
        self.validation_s += time.time() - self._start
        self.evaluations.append((runner.epoch, dict(metrics or {})))


def draw_predictions(runner, out_file, num_images=NUM_PICTURES, score_thr=0.3):
    """Validation images, ground truth (left) beside the trained model's prediction (right), one
    image per row under a heading row, as one PNG: mmdet's DetLocalVisualizer draws each pair."""
    import mmcv
    import torch
    from mmengine.dataset import pseudo_collate

    from focalnet_mm.visualization import stack_labelled_columns

    dataset = runner.val_loop.dataloader.dataset
    visualizer = runner.visualizer
    visualizer.dataset_meta = dataset.metainfo
    model = runner.model
    model.eval()
    rows = []
    with torch.no_grad(), warnings.catch_warnings():
        # a model trained for minutes predicts boxes reaching past the image: the picture shows
        # the part inside, and mmengine would warn once per such box or polygon
        warnings.filterwarnings('ignore', message='Warning: The (bbox|polygon) is out of bounds',
                                category=UserWarning)
        for index in range(min(num_images, len(dataset))):
            [sample] = model.test_step(pseudo_collate([dataset[index]]))
            image = mmcv.imread(sample.img_path, channel_order='rgb')
            visualizer.add_datasample(osp.basename(sample.img_path), image, sample, draw_gt=True,
                                      draw_pred=True, pred_score_thr=score_thr)
            rows.append(visualizer.get_image())
    picture = stack_labelled_columns(rows, ('ground truth', f'prediction (score >= {score_thr})'))
    mmcv.imwrite(picture[..., ::-1], out_file)
    return len(rows)


def main(argv=None):
    args = parse_args(argv)
    if not INSTALLED:
        os.chdir(ROOT)  # the config's relative paths (data/, work_dirs/) are repository-relative
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    phases = {}
    start = time.time()
    data_root = args.data_root.rstrip('/') + '/'
    make_demo_coco = load_tool(osp.join('tools', 'data', 'make_demo_coco.py'), 'make_demo_coco')
    wanted = make_demo_coco.generator_info(args.num_train, args.num_val, IMAGE_SIZE, MAX_OBJECTS,
                                           args.seed)
    if recorded_info(data_root) != wanted:
        print(f'[1/3] generating the demo data set in {data_root}', flush=True)
        make_demo_coco.main(['--out', data_root, '--num-train', str(args.num_train),
                             '--num-val', str(args.num_val), '--seed', str(args.seed),
                             '--size', str(IMAGE_SIZE), '--max-objects', str(MAX_OBJECTS)])
    else:
        print(f'[1/3] using the demo data set in {data_root}', flush=True)
    phases['data'] = time.time() - start

    overrides = [f'train_dataloader.dataset.data_root={data_root}',
                 f'val_dataloader.dataset.data_root={data_root}',
                 f'test_dataloader.dataset.data_root={data_root}',
                 f'val_evaluator.ann_file={data_root}annotations/instances_val.json',
                 f'test_evaluator.ann_file={data_root}annotations/instances_val.json']
    schedule = [f'train_cfg.max_epochs={args.epochs}', 'train_cfg.val_interval=1',
                'param_scheduler.1.milestones=[%d]' % max(1, args.epochs - 1),
                f'param_scheduler.1.end={args.epochs}',
                f'default_hooks.checkpoint.interval={args.epochs}']  # one ~560 MB write, at the end
    print(f'[2/3] training Mask R-CNN FocalNet-T from scratch on CPU ({CONFIG}), {args.epochs} '
          f'epochs on {args.num_train} images, COCO mAP on {args.num_val} images after each',
          flush=True)
    phase_start = time.time()
    train = load_tool(osp.join('tools', 'train.py'), 'focalnet_train')
    with progress_console():
        runner = build_runner_from_cfg(train.make_config(train.parse_args(
            [osp.join(ROOT, CONFIG), '--work-dir', args.work_dir, '--cfg-options', *overrides,
             *schedule])))
        print('      environment and config: '
              f'{shown(osp.join(runner.log_dir, runner.timestamp + ".log"))} and '
              f'{shown(osp.join(args.work_dir, osp.basename(CONFIG)))}', flush=True)
        phases['build'] = time.time() - phase_start
        timer = PhaseTimer()
        runner.register_hook(timer)
        phase_start = time.time()
        runner.train()
    phases['validation'] = timer.validation_s
    phases['training'] = time.time() - phase_start - timer.validation_s
    with open(osp.join(args.work_dir, 'last_checkpoint')) as f:
        checkpoint = shown(f.read().strip())
    train_log = shown(osp.join(runner.log_dir, f'{runner.timestamp}.log'))

    print('[3/3] drawing the training curves and predictions on validation images', flush=True)
    phase_start = time.time()
    analyze_logs = load_tool(osp.join('tools', 'analysis_tools', 'analyze_logs.py'), 'analyze_logs')
    curves = osp.join(args.work_dir, 'curves.png')
    try:
        analyze_logs.plot_curve([osp.join(runner.log_dir, 'vis_data', 'scalars.json')],
                                ['loss', 'loss_mask', 'lr', 'coco/bbox_mAP', 'coco/segm_mAP'], None,
                                'Mask R-CNN FocalNet-T demo: training curves', curves)
    except analyze_logs.LogError as e:  # e.g. a run shorter than the logging interval
        curves = None
        print(f'no training curves drawn: {e}', flush=True)
    pictures = osp.join(args.work_dir, 'predictions.png')
    drawn = draw_predictions(runner, pictures)
    phases['curves'] = time.time() - phase_start

    metrics = timer.evaluations[-1][1]
    minutes, seconds = divmod(int(time.time() - start), 60)
    print('\n' + '=' * 72)
    print(f'Mask R-CNN FocalNet-T demo finished in {minutes}m{seconds:02d}s '
          f'({torch_threads()} torch threads)')
    print('  ' + ' | '.join(f'{name} {phases[name]:.0f}s'
                            for name in ('data', 'build', 'training', 'validation', 'curves')))
    for kind, name in (('bbox', 'box '), ('segm', 'mask')):
        rise = ' -> '.join(f'{m.get(f"coco/{kind}_mAP", float("nan")):.3f}'
                           for _, m in timer.evaluations)
        print(f'  {name} mAP {metrics[f"coco/{kind}_mAP"]:.3f}   mAP@50 {metrics[f"coco/{kind}_mAP_50"]:.3f}'
              f'   mAP@75 {metrics[f"coco/{kind}_mAP_75"]:.3f}   by epoch: {rise}')
    losses = ' -> '.join(f'{sum(v) / len(v):.2f}' for _, v in sorted(timer.epoch_losses.items()))
    print(f'  training loss (mean per epoch): {losses}')
    print(f'  training log : {train_log}')
    print(f'  checkpoint   : {checkpoint}')
    if curves:
        print(f'  curves       : {shown(curves)} (loss, lr, mAP; tools/analysis_tools/analyze_logs.py)')
    print(f'  predictions  : {shown(pictures)} ({drawn} validation images; left: true boxes and '
          'masks, right: predicted, score >= 0.3)')
    print(f'  work dir     : {shown(args.work_dir)}/ (logs, vis_data/scalars.json, checkpoints)')
    python = shown(sys.executable) if sys.executable.startswith(ROOT + os.sep) else 'python'
    data = '' if data_root == 'data/demo_coco/' else ' --cfg-options ' + ' '.join(overrides)
    if INSTALLED:  # the package's commands (focalnet_mm/commands.py)
        test, demo, data = 'focalnet-mm test', 'focalnet-mm run-demo', ' --cfg-options ' + ' '.join(overrides)
        config = osp.join(ROOT, CONFIG)
    else:
        test, demo, config = f'{python} tools/test.py', f'{python} tools/run_demo.py', CONFIG
    print(f'  re-evaluate  : {test} {config} {checkpoint}{data}')
    if not args.full:
        print(f'  longer run   : {demo} --full (more data and iterations, higher mAP)')
    print('=' * 72)
    return metrics


def torch_threads():
    import torch
    return torch.get_num_threads()


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
