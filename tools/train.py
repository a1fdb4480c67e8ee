"""Train a FocalNet detector, segmentor or classifier (same CLI as mmdet's tools/train.py).

    python tools/train.py configs/maskrcnn_focalnet_t_3x.py [--amp] [--resume [CKPT]]
    bash tools/dist_train.sh configs/maskrcnn_focalnet_t_3x.py 8
"""
import argparse
import logging
import os
import os.path as osp
import sys
import traceback

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without install

from mmengine.config import DictAction  # noqa: E402

# focalnet_mm (compat fixes + registration, before any config is read) and the stack behind it are
# imported by make_config/main, after the arguments are parsed: `train.py -h`, which `mim train`
# runs before every training, answers in a second instead of after importing the whole stack.


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model with a FocalNet backbone')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed precision')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the LR by (GPUs x samples per GPU) / base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or without a value from the latest checkpoint '
                        'in the work dir')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. train_cfg.max_epochs=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def make_config(args):
    """Everything checked before a model is built."""
    from mmengine.logging import print_log

    from focalnet_mm.checks.data_paths import check_datasets
    from focalnet_mm.checks.dataset_files import check_class_order
    from focalnet_mm.checks.training import check_num_classes, drop_foreign_pretrained
    from focalnet_mm.config.loading import prepare_config  # imports focalnet_mm first
    from focalnet_mm.config.safe_training import make_training_safe
    cfg = prepare_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    for line in drop_foreign_pretrained(cfg):  # e.g. mmseg bases' ResNet model.pretrained
        print_log(line, logger='current', level=logging.WARNING)
    if args.amp:
        import torch
        if not torch.cuda.is_available():  # mmengine's AmpOptimWrapper asserts a GPU
            raise ValueError('--amp trains with CUDA mixed precision and this machine has no CUDA '
                             'GPU: drop --amp to train in fp32 here.')
        # the guarded wrapper of configs/_base_/safe_training.py has its AMP variant
        guarded = str(cfg.optim_wrapper.get('type', '')).rpartition('.')[2].startswith('Finite')
        cfg.optim_wrapper.type = 'FiniteAmpOptimWrapper' if guarded else 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise ValueError(f'{args.config} has no auto_scale_lr.base_batch_size; add '
                             'auto_scale_lr = dict(enable=False, base_batch_size=16) to it.')
        cfg.auto_scale_lr.enable = True
    # what configs/_base_/safe_training.py names (atomic checkpoints, mid-epoch resume, the
    # non-finite guard, bad samples skipped), added to a config that lacks it and listed in one
    # log block; a dist timeout; --resume checks the checkpoint and skips a damaged newest one
    make_training_safe(cfg, args.resume)
    loaders = ('train_dataloader', ) + (('val_dataloader', ) if cfg.get('val_cfg') else ())
    check_datasets(cfg, loaders)
    check_num_classes(cfg, loaders)  # heads sized for the classes they are trained on
    check_class_order(cfg, loaders)  # label i is classes[i] (mmdet numbers labels in the JSON's order)
    return cfg


def main(argv=None):
    """Train; returns the Runner (its work_dir holds the logs and checkpoints)."""
    args = parse_args(argv)
    try:
        cfg = make_config(args)
    except (FileNotFoundError, ValueError) as e:  # missing data included (DatasetNotFoundError)
        sys.exit(f'error: {e}')
    from focalnet_mm.checks.training import warn_about_run
    from focalnet_mm.engine import NonFiniteLossError, TooManyBadSamplesError, lost_rank_message
    from focalnet_mm.engine.bad_samples import one_line
    from focalnet_mm.engine.distributed import end_rank, error_line
    from focalnet_mm.runner_building import build_runner_from_cfg
    from focalnet_mm.weights import WeightsHashError, WeightsUnavailableError
    runner = build_runner_from_cfg(cfg)
    try:
        warn_about_run(runner)  # warm-up longer than the run, training scale far above the images
    except ValueError as e:
        sys.exit(f'error: {e}')
    if runner.distributed:
        import torch.distributed as dist
        runner.logger.info(f'Distributed run: world size {runner.world_size} ({dist.get_backend()})')
    # a stop on one rank ends every rank: end_rank ends its DataLoader workers, passes its line
    # to the peers and (distributed) exits, so that their collectives fail at once
    try:
        runner.train()
    except (WeightsUnavailableError, WeightsHashError) as e:  # the message names the ways out
        sys.exit(f'error: {e}')
    except (NonFiniteLossError, TooManyBadSamplesError) as e:  # (also from a DataLoader worker)
        end_rank(runner, f'error: {one_line(e)}', e)
        sys.exit(f'error: {one_line(e)}')
    except Exception as e:  # a dead rank makes the others fail: name it in one line
        message = lost_rank_message(e, cfg.env_cfg.dist_cfg.get('timeout'))
        if message is None:  # this rank's own failure: its traceback, and its last line to the peers
            if runner.distributed:
                traceback.print_exc()
            end_rank(runner, f'error: {error_line(e)}', e)
            raise
        end_rank(runner, f'error: {message}', e, announce=False)
        sys.exit(f'error: {message}')
    return runner


if __name__ == '__main__':
    main()
    from focalnet_mm.runner_building import finish_distributed
    finish_distributed()
