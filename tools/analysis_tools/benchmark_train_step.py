"""Whole-model train-step speed, dataset-free: FocalNet detectors/segmentors vs mmdet's Swin-T.

The backbone alone (benchmark_backbone.py) is not what a user waits for: a Mask R-CNN step at
800x1344 is dominated by the heads. This times ``model.train_step`` (data preprocessor, forward,
losses, backward, optimizer step, exactly as the runner calls it) of each config's model on one
synthetic batch (random images, boxes and masks, or label maps), configs interleaved.

    # the issue's target: Mask R-CNN FocalNet-T vs Swin-T, one GPU, fp32 and AMP
    python tools/analysis_tools/benchmark_train_step.py --device cuda --batch 2 --size 800 1344
    python tools/analysis_tools/benchmark_train_step.py --device cuda --batch 2 --size 800 1344 --amp
    # any configs (detection or segmentation); CPU smoke run
    python tools/analysis_tools/benchmark_train_step.py configs/det/atss_focalnet_t_lrf_3x.py \\
        --device cpu --batch 1 --size 128 128 --repeats 2 --iters 1

Models are initialised as a training run initialises them (``model.init_weights()``: the heads'
priors such as DINO's classification bias, the backbone's official init), with every pretrained
entry dropped (nothing is downloaded), so the losses printed are those a real run starts from. The
optimizer is the config's ``optim_wrapper`` (``--amp``: AmpOptimWrapper, as tools/train.py --amp).
"""
import argparse
import datetime
import os.path as osp
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import focalnet_mm  # noqa: E402,F401  (compat fixes + registration before configs are built)
from focalnet_mm.ops import CHOICES  # noqa: E402
from focalnet_mm.scripts import load_script  # noqa: E402

DEFAULT_CONFIGS = ('configs/maskrcnn_focalnet_t_3x.py',
                   'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py')


def load_backbone_benchmark():
    """sync / environment / PeakMemory / write_report are shared with benchmark_backbone.py."""
    return load_script(osp.join(osp.dirname(osp.abspath(__file__)), 'benchmark_backbone.py'))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train-step speed of whole models on synthetic data')
    p.add_argument('configs', nargs='*', default=list(DEFAULT_CONFIGS),
                   help='det or seg configs (default: Mask R-CNN FocalNet-T 3x and mmdet Swin-T 3x)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--size', type=int, nargs=2, default=(800, 1344), metavar=('H', 'W'))
    p.add_argument('--objects', type=int, default=8, help='synthetic objects per image (det)')
    p.add_argument('--amp', action='store_true', help='mixed precision (AmpOptimWrapper)')
    p.add_argument('--impl', '--impls', dest='impls', nargs='+', choices=CHOICES, default=None,
                   help='FocalNet backbones: model.backbone.impl, one row per value, timed side '
                        'by side (default: the config\'s, else FOCALNET_IMPL, else auto)')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--iters', type=int, default=10)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--threads', type=int, help='CPU threads')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', help='JSON file (default work_dirs/benchmarks/train_step_*.json)')
    args = p.parse_args(argv)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        p.error('--device cuda but torch.cuda.is_available() is False; use --device cpu.')
    if args.amp and not args.device.startswith('cuda'):
        p.error('--amp times CUDA mixed precision; drop it with --device cpu.')
    if min(args.repeats, args.iters, args.batch, args.objects, *args.size) < 1 or args.warmup < 0:
        p.error('--repeats, --iters, --batch, --objects and --size must be >= 1, --warmup >= 0.')
    return args


def synthetic_det_batch(batch, height, width, num_objects, num_classes, gen):
    """Random images with random boxes, matching box masks and labels (mmdet inputs)."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen))
        size = torch.rand(num_objects, 2, generator=gen) * 0.4 + 0.1  # 10-50 % of the side
        corner = torch.rand(num_objects, 2, generator=gen) * (1 - size)
        scale = torch.tensor([width, height], dtype=torch.float32)
        boxes = torch.cat([corner * scale, (corner + size) * scale], 1).floor()
        masks = np.zeros((num_objects, height, width), dtype=np.uint8)
        for k, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
            masks[k, y0:y1, x0:x1] = 1
        sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             scale_factor=(1.0, 1.0), flip=False))
        sample.gt_instances = InstanceData(
            bboxes=HorizontalBoxes(boxes),
            labels=torch.randint(0, num_classes, (num_objects, ), generator=gen),
            masks=BitmapMasks(masks, height, width))
        sample.ignored_instances = InstanceData(bboxes=HorizontalBoxes(torch.zeros(0, 4)),
                                                labels=torch.zeros(0, dtype=torch.long))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def synthetic_seg_batch(batch, height, width, num_classes, gen):
    """Random images with random label maps (mmseg inputs)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen))
        sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             pad_shape=(height, width)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, height, width), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def num_classes(model_cfg):
    for path in (('roi_head', 'bbox_head'), ('bbox_head', ), ('decode_head', ), ('roi_head', )):
        node = model_cfg
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, (list, tuple)):  # cascade heads
            node = node[0]
        if isinstance(node, dict) and 'num_classes' in node:
            return node['num_classes']
    return 80


def config_file(config):
    """The file behind ``config``; ``mmdet::swin/...`` names a config inside an installed package."""
    if '::' not in config:
        if not osp.isfile(config):
            raise FileNotFoundError(f'config {config} not found (a path, or mmdet::<dir>/<name>.py '
                                    'for a config shipped with mmdet/mmseg)')
        return config
    from mmengine.config.utils import _get_external_cfg_base_path, _get_package_and_cfg_path
    from mmengine.utils import get_installed_path
    package, relative = _get_package_and_cfg_path(config)
    return _get_external_cfg_base_path(get_installed_path(package), relative)


def drop_pretrained(node, path='model'):
    """Remove every ``Pretrained`` init_cfg and ``pretrained`` entry below ``node`` (in place);
    returns the dotted paths removed (weights are never downloaded by a benchmark)."""
    removed = []
    if isinstance(node, dict):
        for key in list(node):
            value = node[key]
            if key == 'pretrained' and value:
                node[key] = None
                removed.append(f'{path}.pretrained')
            elif key == 'init_cfg' and value:
                entries = value if isinstance(value, (list, tuple)) else [value]
                kept = [e for e in entries if not (isinstance(e, dict) and e.get('type') == 'Pretrained')]
                if len(kept) != len(entries):
                    node[key] = (kept or None) if isinstance(value, (list, tuple)) else None
                    removed.append(f'{path}.init_cfg')
            else:
                removed += drop_pretrained(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            removed += drop_pretrained(value, f'{path}[{i}]')
    return removed


def build(config, args, device, impl=None):
    """(name, scope, model, optim_wrapper, batch) for one config (FocalNet backbones with
    ``impl`` when given)."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(config_file(config))
    scope = cfg.get('default_scope', 'mmdet')
    if scope not in ('mmdet', 'mmseg'):
        raise ValueError(f'{config}: default_scope {scope!r}; this tool times detection and '
                         'segmentation configs (use benchmark_backbone.py for classifiers)')
    # the scope is set only while this tool builds and steps (callers' scope is left untouched)
    with DefaultScope.overwrite_default_scope(scope):
        return build_in_scope(cfg, config, scope, args, device, impl)


def is_focalnet(cfg):
    backbone = cfg.model.get('backbone')
    return backbone is not None and str(backbone.get('type')).endswith('FocalNet')


def build_in_scope(cfg, config, scope, args, device, impl=None):
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS
    if impl is not None and is_focalnet(cfg):
        cfg.model.backbone['impl'] = impl
    dropped = drop_pretrained(cfg.model)
    if dropped:
        print(f'note: {osp.basename(config)}: pretrained weights not loaded ({", ".join(dropped)}); '
              'every other init_cfg applies', flush=True)
    model = MODELS.build(cfg.model)
    model.init_weights()  # as the runner does: heads' priors, the backbone's official init
    model = revert_sync_batchnorm(model).to(device).train()  # one process: SyncBN -> BN
    optim_cfg = cfg.optim_wrapper.copy()
    if args.amp:
        optim_cfg['type'] = 'AmpOptimWrapper'
        optim_cfg.setdefault('loss_scale', 'dynamic')
    optim_wrapper = build_optim_wrapper(model, optim_cfg)
    gen = torch.Generator().manual_seed(args.seed)
    h, w = args.size
    if scope == 'mmdet':
        batch = synthetic_det_batch(args.batch, h, w, args.objects, num_classes(cfg.model), gen)
    else:
        batch = synthetic_seg_batch(args.batch, h, w, num_classes(cfg.model), gen)
        crop = cfg.model.get('data_preprocessor', {}).get('size')
        if crop and tuple(crop) != (h, w):
            print(f'note: {osp.basename(config)} pads every input to its crop size {tuple(crop)}; '
                  f'--size {crop[0]} {crop[1]} times what its training runs', flush=True)
    name = osp.splitext(osp.basename(config))[0] + (f'[{impl}]' if impl and is_focalnet(cfg) else '')
    return name, scope, model, optim_wrapper, batch


def main(argv=None):
    args = parse_args(argv)
    from mmengine.registry import DefaultScope
    from tqdm import tqdm
    bench = load_backbone_benchmark()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rows, configs = [], []
    for config in args.configs:
        for impl in (args.impls or [None]):
            row = build(config, args, device, impl)
            rows.append(row)
            configs.append(config)
            if not row[0].endswith(']'):  # not a FocalNet backbone: one row is enough
                break
    results = {name: dict(config=config, ms=[], peak_mem_mib=None, losses=None)
               for config, (name, *_) in zip(configs, rows)}

    def step(model, optim_wrapper, batch):
        return model.train_step(batch, optim_wrapper)

    total = len(rows) * (args.repeats + 1)
    with tqdm(total=total, desc='train steps', unit='block', dynamic_ncols=True) as progress:
        for name, scope, model, optim_wrapper, batch in rows:
            with DefaultScope.overwrite_default_scope(scope):
                for _ in range(max(args.warmup, 1)):
                    log_vars = step(model, optim_wrapper, batch)
            bench.sync(device)
            results[name]['losses'] = {k: float(torch.as_tensor(v).detach()) for k, v in log_vars.items()}
            progress.update(1)
        for rep in range(args.repeats):
            shift = rep % len(rows)
            for name, scope, model, optim_wrapper, batch in rows[shift:] + rows[:shift]:
                with DefaultScope.overwrite_default_scope(scope), bench.PeakMemory(device) as mem:
                    bench.sync(device)
                    start = time.perf_counter()
                    for _ in range(args.iters):
                        step(model, optim_wrapper, batch)
                    bench.sync(device)
                    elapsed = time.perf_counter() - start
                res = results[name]
                res['ms'].append(1000 * elapsed / args.iters)
                if mem.mib is not None:
                    res['peak_mem_mib'] = max(res['peak_mem_mib'] or 0.0, mem.mib)
                progress.update(1)
            progress.set_postfix_str(f'repeat {rep + 1}/{args.repeats}')

    first = None
    lines = ['| model | median ms / step | vs first | peak MiB | loss after warm-up |',
             '|---|---:|---:|---:|---:|']
    for name, res in results.items():
        res['ms_median'] = statistics.median(res['ms'])
        first = first or res['ms_median']
        mem = 'n/a' if res['peak_mem_mib'] is None else f"{res['peak_mem_mib']:.0f}"
        lines.append(f"| {name} | {res['ms_median']:.1f} | {first / res['ms_median']:.2f}x | "
                     f"{mem} | {res['losses'].get('loss', float('nan')):.3f} |")
    table = '\n'.join(lines)
    env = bench.environment(device)
    h, w = args.size
    impls = ' '.join(args.impls or ['config/auto'])
    print(f'\n{env.get("gpu", env["cpu"])} | torch {env["torch"]} | batch {args.batch} x 3 x {h} x '
          f'{w} | amp={args.amp} | focal impl {impls} | {args.repeats} repeats x '
          f'{args.iters} iters\n')
    print(table)
    out = args.out or osp.join('work_dirs', 'benchmarks', f'train_step_{device.type}_{args.batch}x'
                               f'{h}x{w}_{datetime.datetime.now():%Y%m%d_%H%M%S}.json')
    bench.write_report(out, env, args, results, table)
    return results


if __name__ == '__main__':
    main()
