"""The README main job, end to end on CPU: demo data -> train FocalNet-T Mask R-CNN -> COCO mAP.

    python tools/run_demo.py                     # about 10 minutes on 2 CPU cores
    python tools/run_demo.py --epochs 1          # a quicker look

1. generates the synthetic COCO-format data set (tools/data/make_demo_coco.py) unless present,
2. trains configs/demo/maskrcnn_focalnet_t_demo.py with tools/train.py (mmengine's log shows
   progress, loss and ETA),
3. evaluates the last checkpoint with tools/test.py (CocoMetric, bbox + segm),
4. prints box/mask mAP and where the logs and checkpoints are.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a clone without install

from focalnet_mm.cli import load_script  # noqa: E402

CONFIG = osp.join('configs', 'demo', 'maskrcnn_focalnet_t_demo.py')
IMAGE_SIZE, MAX_OBJECTS = 160, 3  # demo images about as large as the config's training scale


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
    return osp.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'maskrcnn_focalnet_t_demo'))
    parser.add_argument('--data-root', default=osp.join('data', 'demo_coco'))
    parser.add_argument('--epochs', type=int, help='training epochs (default: the config\'s)')
    parser.add_argument('--num-train', type=int, default=200, help='demo training images')
    parser.add_argument('--num-val', type=int, default=40, help='demo validation images')
    parser.add_argument('--seed', type=int, default=0, help='data generation seed')
    parser.add_argument('--threads', type=int,
                        help='CPU threads for torch (default: one per core; on a machine shared with '
                        'other jobs 1 is often faster, as idle-waiting threads stall each op)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.chdir(ROOT)  # the config's relative paths (data/, work_dirs/) are repository-relative
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
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

    overrides = [f'train_dataloader.dataset.data_root={data_root}',
                 f'val_dataloader.dataset.data_root={data_root}',
                 f'test_dataloader.dataset.data_root={data_root}',
                 f'val_evaluator.ann_file={data_root}annotations/instances_val.json',
                 f'test_evaluator.ann_file={data_root}annotations/instances_val.json']
    # evaluated once, by tools/test.py below, instead of also at the end of training
    train_overrides = ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']
    if args.epochs:
        train_overrides += [f'train_cfg.max_epochs={args.epochs}',
                            'param_scheduler.1.milestones=[%d]' % max(1, args.epochs - 1),
                            f'param_scheduler.1.end={args.epochs}']
    print(f'[2/3] training Mask R-CNN FocalNet-T from scratch on CPU ({CONFIG})', flush=True)
    train = load_tool(osp.join('tools', 'train.py'), 'focalnet_train')
    runner = train.main([CONFIG, '--work-dir', args.work_dir, '--cfg-options', *overrides,
                         *train_overrides])
    with open(osp.join(args.work_dir, 'last_checkpoint')) as f:
        checkpoint = shown(f.read().strip())
    train_log = shown(osp.join(runner.log_dir, f'{runner.timestamp}.log'))
    analyze_logs = load_tool(osp.join('tools', 'analysis_tools', 'analyze_logs.py'), 'analyze_logs')
    curves = osp.join(args.work_dir, 'curves.png')
    try:
        analyze_logs.plot_curve([osp.join(runner.log_dir, 'vis_data', 'scalars.json')],
                                ['loss', 'loss_bbox', 'loss_mask', 'lr'], None,
                                'Mask R-CNN FocalNet-T demo: training curves', curves)
    except analyze_logs.LogError as e:  # e.g. a run shorter than the logging interval
        curves = None
        print(f'no training curves drawn: {e}', flush=True)

    print(f'[3/3] evaluating {checkpoint} with CocoMetric (bbox, segm)', flush=True)
    test = load_tool(osp.join('tools', 'test.py'), 'focalnet_test')
    metrics = test.main([CONFIG, checkpoint, '--work-dir', args.work_dir, '--cfg-options', *overrides])

    minutes, seconds = divmod(int(time.time() - start), 60)
    print('\n' + '=' * 72)
    print(f'Mask R-CNN FocalNet-T demo finished in {minutes}m{seconds:02d}s')
    for kind, name in (('bbox', 'box '), ('segm', 'mask')):
        print(f'  {name} mAP {metrics[f"coco/{kind}_mAP"]:.3f}   mAP@50 {metrics[f"coco/{kind}_mAP_50"]:.3f}'
              f'   mAP@75 {metrics[f"coco/{kind}_mAP_75"]:.3f}')
    print(f'  training log : {train_log}')
    print(f'  checkpoint   : {checkpoint}')
    if curves:
        print(f'  curves       : {shown(curves)} (loss, lr; tools/analysis_tools/analyze_logs.py)')
    print(f'  work dir     : {shown(args.work_dir)}/ (logs, vis_data/scalars.json, checkpoints)')
    python = shown(sys.executable) if sys.executable.startswith(ROOT + os.sep) else 'python'
    print(f'  re-evaluate  : {python} tools/test.py {CONFIG} {checkpoint}')
    print('=' * 72)
    return metrics


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
