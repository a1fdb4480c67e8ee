"""Test (evaluate) a FocalNet detector, segmentor or classifier (same CLI as mmdet's tools/test.py).

    python tools/test.py configs/maskrcnn_focalnet_t_3x.py work_dirs/.../epoch_36.pth [--tta]
    bash tools/dist_test.sh CONFIG CHECKPOINT 8

CHECKPOINT may be an mmengine checkpoint of the whole model or a FocalNet file in the official,
timm or HF format (classification files bring their head into mmpretrain classifiers), or a model
exported by tools/deploy.py (end2end.onnx, end2end.engine): the same data and metrics then run on
ONNX Runtime / TensorRT (docs/deploy.md).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without install

from mmengine.config import ConfigDict, DictAction  # noqa: E402

import focalnet_mm  # noqa: E402,F401  (compat fixes + registration before anything is built)
from focalnet_mm.checks.data_paths import DatasetNotFoundError, check_datasets  # noqa: E402
from focalnet_mm.checks.dataset_files import check_class_order  # noqa: E402
from focalnet_mm.config.loading import prepare_config  # noqa: E402
from focalnet_mm.config.safe_training import log_substitutions, wrap_datasets_by_runner  # noqa: E402
from focalnet_mm.deploy import build_backend_model, deployed_config, deployed_files, is_deployed  # noqa: E402
from focalnet_mm.engine import TooManyBadSamplesError  # noqa: E402
from focalnet_mm.engine.bad_samples import one_line  # noqa: E402
from focalnet_mm.runner_building import build_runner_from_cfg, finish_distributed  # noqa: E402
from focalnet_mm.weights import (  # noqa: E402
    check_whole_model_checkpoint,
    is_mmengine_model_checkpoint,
    load_model_weights,
    read_checkpoint,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a model with a FocalNet backbone')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', type=str, help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir',
                        help='where painted images are saved; a relative path goes inside the work dir')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--interval', type=int, default=1,
                        help='paint every N-th test batch (segmentation, classification)')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (multi-scale + flip)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. test_dataloader.batch_size=1')
    parser.add_argument('--device', default='cpu',
                        help='where an exported model (end2end.onnx / .engine) runs: cpu or cuda')
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
    """Turn on drawing the way each library's own tools/test.py does (their hooks differ)."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ValueError('--show/--show-dir need a "visualization" entry in default_hooks.')
    scope = cfg.get('default_scope')
    if scope == 'mmpretrain':  # VisualizationHook(enable, interval, show, wait_time, out_dir)
        hook['enable'] = True
    else:  # mmdet DetVisualizationHook / mmseg SegVisualizationHook
        hook['draw'] = True
    if args.interval < 1:
        raise ValueError(f'--interval must be >= 1, got {args.interval}')
    hook['interval'] = args.interval  # mmdet paints every test image whatever the interval
    if args.show:
        hook['show'], hook['wait_time'] = True, args.wait_time
    if args.show_dir:
        show_dir = osp.join(cfg.work_dir, args.show_dir)  # absolute paths stay as they are
        if scope == 'mmdet':  # absolute: DetVisualizationHook would nest it in <work_dir>/<timestamp>/
            hook['test_out_dir'] = osp.abspath(show_dir)
            return
        if scope == 'mmseg':  # SegVisualizationHook has no output dir: the visualizer saves
            cfg.visualizer['save_dir'] = show_dir
        else:
            hook['out_dir'] = show_dir


def make_config(args):
    """Everything checked before a model is built; returns (cfg, the checkpoint as read).

    A whole-model mmengine checkpoint goes to ``cfg.load_from``; for a FocalNet file (official,
    timm, HF: mmengine cannot read those) ``load_from`` stays None and main() converts it.
    """
    if is_deployed(args.checkpoint):  # tools/deploy.py's folder: the backend model replaces ours
        deployed_files(args.checkpoint)
    elif '://' not in args.checkpoint and not osp.exists(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} not found (give a .pth file written by '
                                'tools/train.py, or a FocalNet file: official, timm or HF)')
    cfg = prepare_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    if args.tta:
        enable_tta(cfg, args.config)
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError('--out must be a .pkl or .pickle file')
        evaluators = cfg.test_evaluator
        cfg.test_evaluator = [evaluators] if isinstance(evaluators, dict) else list(evaluators)
        # mmdet's own dumper stores masks as RLE (what its analysis tools read)
        dumper = 'DumpDetResults' if cfg.get('default_scope') == 'mmdet' else 'DumpResults'
        cfg.test_evaluator.append(dict(type=dumper, out_file_path=args.out))
    check_datasets(cfg, ('test_dataloader', ))
    # a broken test image is skipped and named (configs/_base_/safe_training.py); logged when added
    log_substitutions(wrap_datasets_by_runner(cfg))
    check_class_order(cfg, ('test_dataloader', ))  # painted and logged names are the labels'
    if is_deployed(args.checkpoint):
        if args.tta:
            raise ValueError('--tta runs several PyTorch forward passes; an exported model has one')
        cfg.load_from = None
        return deployed_config(cfg, args.checkpoint), None
    checkpoint = read_checkpoint(args.checkpoint)  # once, safely; mmengine's load_from reads again
    cfg.load_from = args.checkpoint if is_mmengine_model_checkpoint(checkpoint) else None
    return cfg, checkpoint


def main(argv=None):
    """Evaluate; returns the metrics dict (e.g. coco/bbox_mAP, coco/segm_mAP)."""
    args = parse_args(argv)
    try:
        cfg, checkpoint = make_config(args)
    except (DatasetNotFoundError, FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    runner = build_runner_from_cfg(cfg)
    model = runner.model  # the loaders look inside DDP / mmengine wrappers themselves
    try:
        if is_deployed(args.checkpoint):
            runner.model = build_backend_model(args.checkpoint, device=args.device)
        elif cfg.load_from is None:  # a FocalNet file: convert and load (backbone, + a classifier head)
            load_model_weights(model, args.checkpoint, logger=runner.logger)  # path: HF config.json too
        else:  # mmengine's load_from below would only warn about a checkpoint that does not fit
            check_whole_model_checkpoint(model, checkpoint, logger=runner.logger,
                                         source=args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    try:
        return runner.test()
    except TooManyBadSamplesError as e:  # (also from a DataLoader worker)
        sys.exit(f'error: {one_line(e)}')


if __name__ == '__main__':
    main()
    finish_distributed()
