"""Side-by-side backbone speed: focalnet-mm (each implementation) vs timm FocalNet, mmdet Swin-T
and timm ConvNeXt-T, in one process, interleaved, with the same FocalNet weights.

Examples::

    # detection scale on a GPU, training step (forward + backward), fp32 and fp16 autocast
    python tools/analysis_tools/benchmark_backbone.py --batch 2 --size 800 1344 \\
        --mode train --dtype fp32 fp16
    # dataset-free inference throughput (img/s), classification scale
    python tools/analysis_tools/benchmark_backbone.py --batch 128 --size 224 224 --mode infer \\
        --dtype fp16 --focal-windows 3 --compile off on
    # CPU smoke run
    python tools/analysis_tools/benchmark_backbone.py --device cpu --batch 1 --size 128 128

Every row is timed ``--repeats`` times, rows interleaved (round-robin, rotating the order each
repeat), each time ``--iters`` iterations after ``--warmup`` untimed ones; the table reports the
median ms per iteration, img/s and the peak memory (CUDA: ``max_memory_allocated`` during the
row's iterations, weights and input included; CPU: growth of the peak RSS, or n/a where the
kernel does not let it be reset).
"""
import argparse
import copy
import datetime
import json
import logging
import os
import os.path as osp
import platform
import statistics
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn as nn
from mmengine.logging import MMLogger

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import focalnet_mm  # noqa: E402  (compat fixes before mmdet is imported)
from focalnet_mm.models import (
    FocalNet,  # noqa: E402
    set_focal_impl,  # noqa: E402
)
from focalnet_mm.ops import CHOICES, triton_available  # noqa: E402

DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}
MODELS = ('focalnet', 'timm_focalnet', 'swin', 'convnext')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=list(MODELS), choices=MODELS,
                   help='rows to time; "focalnet" is ours, one row per --impls entry')
    p.add_argument('--impls', nargs='+', choices=CHOICES, default=None,
                   help='our implementations (default: reference fast, plus auto on CPU and '
                        'triton on CUDA; auto picks per layer and map size)')
    p.add_argument('--arch', default='tiny_lrf', help='FocalNet preset for ours and timm')
    p.add_argument('--focal-windows', type=int, default=9,
                   help='first-level kernel (9: detection kernels [9,11,13]; 3: classification)')
    p.add_argument('--focal-levels', type=int, default=None, help='default: the preset\'s')
    p.add_argument('--embed-dim', type=int, default=None, help='override the preset (ours, timm)')
    p.add_argument('--depths', type=int, nargs='+', default=None,
                   help='override the preset\'s blocks per stage (ours, timm)')
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--size', type=int, nargs=2, default=(800, 1344), metavar=('H', 'W'))
    p.add_argument('--mode', nargs='+', default=['train', 'infer'], choices=('train', 'infer'),
                   help='train: forward + backward (train mode); infer: forward under no_grad')
    p.add_argument('--dtype', nargs='+', default=['fp32'], choices=sorted(DTYPES),
                   help='fp16/bf16 run under torch.autocast with fp32 weights')
    p.add_argument('--channels-last', action='store_true',
                   help='model and input in channels_last memory format')
    p.add_argument('--compile', nargs='+', default=['off'], choices=('off', 'on'),
                   help='torch.compile each row (both: --compile off on)')
    p.add_argument('--cudnn-benchmark', action='store_true',
                   help='torch.backends.cudnn.benchmark=True (re-tunes for every new input shape)')
    p.add_argument('--repeats', type=int, default=5, help='interleaved repeats (median reported)')
    p.add_argument('--iters', type=int, default=10, help='timed iterations per repeat')
    p.add_argument('--warmup', type=int, default=3, help='untimed iterations per row')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--threads', type=int, default=None,
                   help='torch.set_num_threads for CPU runs (default: torch\'s choice)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=None,
                   help='JSON file (default: '
                   'work_dirs/benchmarks/backbone_<device>_<BxHxW>_<time>.json)')
    args = p.parse_args(argv)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        p.error('--device cuda but torch.cuda.is_available() is False; use --device cpu.')
    if min(args.repeats, args.iters, args.batch, *args.size) < 1 or args.warmup < 0:
        p.error('--repeats, --iters, --batch and --size must be >= 1, --warmup >= 0.')
    if args.impls is None:
        args.impls = ['reference', 'fast']
        if not args.device.startswith('cuda'):
            args.impls.append('auto')  # on CUDA auto is fast
        elif triton_available():
            args.impls.append('triton')
    if 'triton' in args.impls and not args.device.startswith('cuda'):
        p.error('--impls triton needs --device cuda (the CPU interpreter is for tests only).')
    return args


# ---------------------------------------------------------------------------------- models
class TimmIntermediates(nn.Module):
    """timm FocalNet returning the four stage maps (what a detector consumes), no head."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_intermediates(x, intermediates_only=True)


def build_ours(args):
    kwargs = dict(focal_windows=args.focal_windows, focal_levels=args.focal_levels,
                  embed_dim=args.embed_dim, depths=args.depths, drop_path_rate=0.0)
    model = FocalNet(args.arch, **kwargs)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs one line per parameter
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def build_timm_focalnet(args, ours):
    """timm's FocalNet class with our preset and kernels, loaded with our weights through
    timm's own official->timm key conversion (``checkpoint_filter_fn``)."""
    from timm.models.focalnet import FocalNet as TimmFocalNet
    from timm.models.focalnet import checkpoint_filter_fn
    cfg = ours.arch_settings
    if cfg['patch_size'] != 4 or len(cfg['depths']) != 4:
        raise ValueError(f'timm has no isotropic FocalNet; drop timm_focalnet from --models for '
                         f'--arch {args.arch}.')
    model = TimmFocalNet(
        embed_dim=ours.num_features[0], depths=tuple(len(s.blocks) for s in ours.layers),
        focal_levels=tuple(ours.focal_levels), focal_windows=tuple(ours.focal_windows),
        use_overlap_down=cfg['use_conv_embed'], use_post_norm=cfg['use_postln'],
        use_post_norm_in_modulation=cfg['use_postln_in_modulation'],
        normalize_modulator=cfg['normalize_modulator'],
        layerscale_value=1e-4 if cfg['use_layerscale'] else None,
        num_classes=0, drop_path_rate=0.0)
    state = {k: v for k, v in ours.state_dict().items() if not k.startswith('norm')}
    missing, unexpected = model.load_state_dict(checkpoint_filter_fn(state, model), strict=False)
    stray = [k for k in missing if not k.startswith(('norm.', 'head'))]
    if stray or unexpected:
        raise RuntimeError(f'timm FocalNet did not take our weights: missing {stray[:5]}, '
                           f'unexpected {unexpected[:5]}')
    return TimmIntermediates(model)


def build_swin(args):
    from mmdet.models.backbones import SwinTransformer
    return SwinTransformer(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                           window_size=7, drop_path_rate=0.0, out_indices=(0, 1, 2, 3))


def build_convnext(args):
    import timm
    return timm.create_model('convnext_tiny', pretrained=False, features_only=True,
                             drop_path_rate=0.0)


def build_rows(args):
    """[(row name, model)] with every FocalNet sharing the same weights."""
    torch.manual_seed(args.seed)
    ours = build_ours(args)
    rows = []
    for model_name in args.models:
        if model_name == 'focalnet':
            for impl in args.impls:
                rows.append((f'focalnet-mm[{impl}]', set_focal_impl(copy.deepcopy(ours), impl)))
        elif model_name == 'timm_focalnet':
            rows.append(('timm-focalnet', build_timm_focalnet(args, ours)))
        elif model_name == 'swin':
            rows.append(('mmdet-swin-t', build_swin(args)))
        elif model_name == 'convnext':
            rows.append(('timm-convnext-t', build_convnext(args)))
    return rows


# ---------------------------------------------------------------------------------- timing
class PeakMemory:
    """Peak memory of a code region: CUDA allocator peak, or CPU peak-RSS growth (Linux)."""

    def __init__(self, device):
        self.cuda = device.type == 'cuda'
        self.device = device
        self.cpu_ok = not self.cuda and self._reset_cpu_peak()

    @staticmethod
    def _status(field):
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
        raise KeyError(field)

    @staticmethod
    def _reset_cpu_peak():
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')  # resets VmHWM to the current RSS
            return True
        except OSError:
            return False

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.cpu_ok:
            self._reset_cpu_peak()
            self.rss0 = self._status('VmRSS')
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.cpu_ok:
            self.mib = (self._status('VmHWM') - self.rss0) / 2**20
        else:
            self.mib = None


def make_step(model, x, mode, dtype, device):
    autocast = (torch.autocast(device.type, dtype=DTYPES[dtype]) if dtype != 'fp32'
                else nullcontext())
    if mode == 'infer':
        def step():
            with torch.no_grad(), autocast:
                return model(x)
    else:
        params = [p for p in model.parameters() if p.requires_grad]

        def step():
            with autocast:
                outs = model(x)
                loss = sum(o.float().mean() for o in outs)
            loss.backward()
            for p in params:
                p.grad = None
            return outs
    return step


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def environment(device):
    import mmdet
    import timm
    env = dict(python=platform.python_version(), torch=torch.__version__, timm=timm.__version__,
               mmdet=mmdet.__version__, focalnet_mm=focalnet_mm.__version__,
               platform=platform.platform(), cpu=platform.processor() or platform.machine(),
               threads=torch.get_num_threads(), device=str(device))
    try:
        import triton
        env['triton'] = triton.__version__
    except ImportError:
        env['triton'] = None
    if device.type == 'cuda':
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(),
                   cudnn_benchmark=torch.backends.cudnn.benchmark)
    else:
        try:
            with open('/proc/cpuinfo') as f:
                env['cpu'] = next(line.split(':', 1)[1].strip() for line in f
                                  if line.startswith('model name'))
        except (OSError, StopIteration):
            pass
    return env


def run_config(rows, args, device, mode, dtype, compiled, progress):
    """Time every row in one (mode, dtype, compile) setting; returns result dicts."""
    torch.manual_seed(args.seed)
    x = torch.randn(args.batch, 3, *args.size, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    live, results, reference_out = [], {}, None
    for name, model in rows:
        res = dict(model=name, mode=mode, dtype=dtype, compile=compiled,
                   channels_last=args.channels_last, batch=args.batch, size=list(args.size),
                   ms=[], peak_mem_mib=None, error=None)
        results[name] = res
        try:
            model.train(mode == 'train')
            runnable = torch.compile(model) if compiled == 'on' else model
            step = make_step(runnable, x, mode, dtype, device)
            for _ in range(max(args.warmup, 1)):
                outs = step()
            sync(device)
            if name.startswith('focalnet-mm') and mode == 'infer':
                flat = torch.cat([o.float().flatten() for o in outs])
                if reference_out is None:
                    reference_out = flat
                res['max_abs_diff_vs_first_focalnet'] = (flat - reference_out).abs().max().item()
            del outs
            live.append((name, step))
        except Exception as e:  # a failing row is reported, not fatal to the others
            res['error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:160]}'
            progress.write(f'  {name} {mode} {dtype} compile={compiled}: {res["error"]}')
            if device.type == 'cuda':
                torch.cuda.empty_cache()
        progress.update(1)
    for rep in range(args.repeats):
        shift = rep % max(len(live), 1)
        for name, step in live[shift:] + live[:shift]:
            res = results[name]
            if res['error']:
                progress.update(1)
                continue
            try:
                with PeakMemory(device) as mem:
                    sync(device)
                    start = time.perf_counter()
                    for _ in range(args.iters):
                        step()
                    sync(device)
                    elapsed = time.perf_counter() - start
            except Exception as e:
                res['error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:160]}'
                progress.write(f'  {name}: {res["error"]}')
                progress.update(1)
                continue
            res['ms'].append(1000 * elapsed / args.iters)
            if mem.mib is not None:
                res['peak_mem_mib'] = max(res['peak_mem_mib'] or 0.0, mem.mib)
            progress.update(1)
        progress.set_postfix_str(f'{mode} {dtype} compile={compiled} repeat {rep + 1}')
    out = []
    for res in results.values():
        if res['ms']:
            res['ms_median'] = statistics.median(res['ms'])
            res['img_per_s'] = args.batch * 1000.0 / res['ms_median']
        out.append(res)
    return out


def format_table(results, device):
    mem_head = 'peak MiB (CUDA max allocated)' if device.type == 'cuda' else 'peak RSS growth MiB'
    lines = [f'| model | mode | dtype | compile | median ms | img/s | vs focalnet-mm[reference] '
             f'| {mem_head} |', '|---|---|---|---|---:|---:|---:|---:|']
    base = {}
    for r in results:
        if r['model'] == 'focalnet-mm[reference]' and r.get('ms_median'):
            base[(r['mode'], r['dtype'], r['compile'])] = r['ms_median']
    for r in results:
        if r.get('ms_median') is None:
            lines.append(f"| {r['model']} | {r['mode']} | {r['dtype']} | {r['compile']} | "
                         f"{r['error'] or 'no timing'} | | | |")
            continue
        ref = base.get((r['mode'], r['dtype'], r['compile']))
        speed = f'{ref / r["ms_median"]:.2f}x' if ref else ''
        mem = 'n/a' if r['peak_mem_mib'] is None else f"{r['peak_mem_mib']:.0f}"
        lines.append(f"| {r['model']} | {r['mode']} | {r['dtype']} | {r['compile']} | "
                     f"{r['ms_median']:.2f} | {r['img_per_s']:.1f} | {speed} | {mem} |")
    return '\n'.join(lines)


def write_report(out, env, args, results, table):
    """The JSON file a benchmark leaves: environment, arguments, command, rows, table."""
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(dict(env=env, args=vars(args), command=' '.join(sys.argv), results=results,
                       table=table), f, indent=2)
    print(f'\nwrote {out}')


def main(argv=None):
    args = parse_args(argv)
    from tqdm import tqdm
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    rows = build_rows(args)
    rows = [(name, m.to(device)) for name, m in rows]
    if args.channels_last:
        rows = [(name, m.to(memory_format=torch.channels_last)) for name, m in rows]
    configs = [(mode, dtype, c) for c in args.compile for mode in args.mode for dtype in args.dtype]
    total = len(configs) * len(rows) * (args.repeats + 1)
    results = []
    with tqdm(total=total, desc='benchmark', unit='step', dynamic_ncols=True) as progress:
        for mode, dtype, compiled in configs:
            results += run_config(rows, args, device, mode, dtype, compiled, progress)
    env = environment(device)
    b, (h, w) = args.batch, args.size
    table = format_table(results, device)
    print(f'\n{env.get("gpu", env["cpu"])} | torch {env["torch"]} | batch {b} x 3 x {h} x {w} | '
          f'focal windows {args.focal_windows} | channels_last={args.channels_last} | '
          f'{args.repeats} repeats x {args.iters} iters\n')
    print(table)
    out = args.out or osp.join(
        'work_dirs', 'benchmarks', f'backbone_{device.type}_{b}x{h}x{w}_'
        f'{datetime.datetime.now():%Y%m%d_%H%M%S}.json')
    write_report(out, env, args, results, table)
    return results


if __name__ == '__main__':
    main()
