"""Test (evaluate) a FocalNet detector, segmentor or classifier (same CLI as mmdet's tools/test.py).

    python tools/test.py configs/maskrcnn_focalnet_t_3x.py work_dirs/.../epoch_36.pth [--tta]
    bash tools/dist_test.sh CONFIG CHECKPOINT 8

CHECKPOINT may be an mmengine checkpoint of the whole model or a FocalNet file in the official,
timm or HF format (classification files bring their head into mmpretrain classifiers).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without install

import focalnet_mm  # noqa: E402,F401  (compat fixes + registration before anything is built)
from focalnet_mm.cli import DatasetNotFoundError, check_datasets, load_config  # noqa: E402
from mmengine.config import ConfigDict, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a model with a FocalNet backbone')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', type=str, help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='directory (inside the work dir) where painted images are saved')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (multi-scale + flip)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. test_dataloader.batch_size=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_tta(cfg, config_path):
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise ValueError(f'{config_path} defines no tta_model/tta_pipeline; use a config that '
                         'inherits them from its mmdet/mmseg base, or drop --tta.')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def enable_visualization(cfg, args):
    hooks = cfg.default_hooks
    hook = hooks.get('visualization')
    if hook is None:
        raise ValueError('--show/--show-dir need a "visualization" entry in default_hooks.')
    hook['draw'] = True
    if args.show:
        hook['show'], hook['wait_time'] = True, args.wait_time
    if args.show_dir:
        hook['test_out_dir'] = args.show_dir


def build_runner(args):
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} not found')
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.tta:
        enable_tta(cfg, args.config)
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError('--out must be a .pkl or .pickle file')
        cfg.test_evaluator = [cfg.test_evaluator] if isinstance(cfg.test_evaluator, dict) else list(cfg.test_evaluator)
        cfg.test_evaluator.append(dict(type='DumpResults', out_file_path=args.out))
    check_datasets(cfg, ('test_dataloader', ))

    from focalnet_mm import weights
    foreign = not weights.is_mmengine_model_checkpoint(args.checkpoint)
    cfg.load_from = None if foreign else args.checkpoint
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    if foreign:  # an official / timm / HF FocalNet file: convert and load into the built model
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        weights.load_model_weights(model, args.checkpoint, logger=runner.logger)
    return runner


def main(argv=None):
    args = parse_args(argv)
    try:
        runner = build_runner(args)
    except (DatasetNotFoundError, FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    return runner.test()


if __name__ == '__main__':
    main()
