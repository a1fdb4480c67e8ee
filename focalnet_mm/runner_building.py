"""Build the Runner the way every tool here does, and the process-group steps around it.

mmengine's Runner (or FlexibleRunner, for a config with a ``strategy``) built from the config,
with what running several tools in one process and CPU-only distributed runs need.
"""
from mmengine.config import Config


def setup_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` run on machines without CUDA (gloo backend, CPU DDP).

    mmengine 0.10.7 always calls ``torch.cuda.set_device`` when it starts a process group and
    wraps the model with ``device_ids=[LOCAL_RANK]``; both fail without a GPU. Here the process
    group is started with gloo first (the Runner then skips its own start) and the DDP wrapper is
    told to keep the CPU model. GPU runs are untouched.
    """
    from datetime import timedelta

    import torch
    import torch.distributed as torch_dist

    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise ValueError(f'--launcher {cfg.launcher} needs GPUs; on CPU start processes with '
                         'torchrun, e.g. bash tools/dist_train.sh CONFIG 2 (--launcher pytorch).')
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        timeout = dist_cfg.get('timeout')  # seconds, as mmengine reads it
        torch_dist.init_process_group(
            backend='gloo', **({} if timeout is None else dict(timeout=timedelta(seconds=timeout))))
    if cfg.get('strategy'):  # FlexibleRunner: FSDPStrategy passes device_id=LOCAL_RANK (a GPU)
        cfg.strategy.setdefault('model_wrapper', {}).setdefault('device_id', torch.device('cpu'))
    elif cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))


def finish_distributed() -> None:
    """Wait for every rank, then close the process group before the interpreter exits.

    mmengine leaves it open; tearing down a live gloo group at exit can abort a rank
    ("terminate called without an active exception") after the work is done.
    """
    import torch.distributed as torch_dist
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def build_runner_from_cfg(cfg: Config):
    """The config's own runner type, else mmengine's Runner (what mmdet's tools do).

    A config with a ``strategy`` (e.g. ``FSDPStrategy``) gets mmengine's FlexibleRunner: the
    plain Runner would ignore the strategy without a word. (The project's configs name a runner
    that wraps every data set in SkipBadSamples, see :mod:`focalnet_mm.engine.runners`; it wraps
    them when built, after the tools' own edits of the dataloaders, e.g. ``--tta``.)

    Each runner gets a visualizer of its own: mmengine's visualizers are process-wide instances
    looked up by name, so a second runner in one process (tools called in-process, the tests)
    would otherwise be handed the first one under the configs' shared name 'visualizer', with its
    class (e.g. a segmentation visualizer in a detection run) and its save_dir.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    from mmengine.visualization import Visualizer

    from .compat import quiet_upstream_notices

    if isinstance(cfg.get('visualizer'), dict):
        name = cfg.visualizer.get('name') or 'visualizer'
        unique, k = name, 1
        # Visualizer.get_instance registers every subclass' instances in Visualizer's own table
        while Visualizer.check_instance_created(unique):
            k += 1
            unique = f'{name}-{k}'
        cfg.visualizer.name = unique

    if cfg.get('strategy') and 'runner_type' not in cfg:
        cfg.runner_type = 'FlexibleRunner'
    setup_cpu_distributed(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    quiet_upstream_notices(runner.logger)
    return runner
