"""Micro-benchmark of FocalNet's context chain alone (depthwise conv -> GELU -> gate -> accumulate,
L levels, then the global level), per implementation x precision, forward and backward apart.

    # the Mask R-CNN stage shapes (B=2 at 800x1344), kernels [9, 11, 13], every impl and precision
    python tools/analysis_tools/benchmark_focal_context.py --device cuda
    # CPU smoke run at tiny sizes
    python tools/analysis_tools/benchmark_focal_context.py --device cpu --shapes 2x16x12x16 \\
        --precisions fp32 bf16 --repeats 2 --iters 2

Per row: ``fwd`` (forward with autograd recording), ``bwd_input`` (backward to the inputs ctx and
gates only, kernels frozen), ``bwd_all`` (backward to inputs and kernels);
``wgrad = bwd_all - bwd_input`` is the weight gradient's share (autograd cannot compute a level's
kernel gradient without the input gradients of the levels after it). ``fp32`` runs with TF32 off,
``tf32`` with TF32 on for cuDNN and matmuls, ``bf16``/``fp16`` with every tensor in that dtype
(what autocast hands the chain). ``conv_backend`` is what ``torch._C._select_conv_backend``
picks for the first level's convolution in the memory layout the implementation uses.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from focalnet_mm.ops import IMPLS, aggregate_context, triton_available  # noqa: E402

#: (B, C, H, W) of the four FocalNet-T stages of Mask R-CNN at batch 2 x 800 x 1344
MASKRCNN_SHAPES = ('2x96x200x336', '2x192x100x168', '2x384x50x84', '2x768x25x42')
PRECISIONS = ('fp32', 'tf32', 'bf16', 'fp16')
DTYPES = dict(fp32=torch.float32, tf32=torch.float32, bf16=torch.bfloat16, fp16=torch.float16)


def parse_shape(text):
    try:
        b, c, h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'shape {text!r}: write BxCxHxW, e.g. 2x96x200x336') from None
    return b, c, h, w


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--shapes', nargs='+', type=parse_shape, default=None,
                   help=f'BxCxHxW per row group (default: {" ".join(MASKRCNN_SHAPES)})')
    p.add_argument('--kernels', nargs='+', type=int, default=[9, 11, 13],
                   help='kernel of each level (detection: 9 11 13)')
    p.add_argument('--impls', nargs='+', choices=IMPLS, default=None,
                   help='default: reference fast, plus triton on CUDA when installed')
    p.add_argument('--precisions', nargs='+', choices=PRECISIONS, default=None,
                   help='default: fp32 tf32 bf16 fp16 on CUDA, fp32 bf16 on CPU')
    p.add_argument('--repeats', type=int, default=5, help='timed repeats (median reported)')
    p.add_argument('--iters', type=int, default=10, help='iterations per repeat')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--out', default=None, help='JSON file (default work_dirs/benchmarks/...)')
    args = p.parse_args(argv)
    cuda = args.device.startswith('cuda')
    if cuda and not torch.cuda.is_available():
        p.error('--device cuda but torch.cuda.is_available() is False; use --device cpu.')
    if min(args.repeats, args.iters) < 1 or args.warmup < 0:
        p.error('--repeats and --iters must be >= 1, --warmup >= 0.')
    if any(k % 2 == 0 or k < 1 for k in args.kernels):
        p.error('--kernels must be odd positive sizes (same padding).')
    args.shapes = args.shapes or [parse_shape(s) for s in MASKRCNN_SHAPES]
    if args.impls is None:
        args.impls = ['reference', 'fast'] + (['triton'] if cuda and triton_available() else [])
    if 'triton' in args.impls and not cuda:
        p.error('--impls triton needs --device cuda (the CPU interpreter is for tests only).')
    if args.precisions is None:
        args.precisions = list(PRECISIONS) if cuda else ['fp32', 'bf16']
    if 'tf32' in args.precisions and not cuda:
        p.error('--precisions tf32 is a CUDA setting; use fp32 on CPU.')
    return args


def conv_backend(x_nhwc, weight, impl):
    """Name of the backend torch picks for level 1's depthwise conv in the impl's layout."""
    if impl == 'triton':
        return 'triton'
    x = x_nhwc.permute(0, 3, 1, 2)
    x = x.contiguous() if impl == 'reference' else x  # fast: an NCHW view of NHWC memory
    k = weight.shape[-1]
    try:
        backend = torch._C._select_conv_backend(x, weight, None, [1, 1], [k // 2, k // 2], [1, 1],
                                                False, [0, 0], x.shape[1])
    except (AttributeError, RuntimeError, TypeError) as e:
        return f'n/a ({type(e).__name__})'
    return str(backend).split('.')[-1]


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_ms(fn, device, repeats, iters, warmup):
    for _ in range(warmup):
        fn()
    sync(device)
    samples = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        sync(device)
        samples.append(1000 * (time.perf_counter() - start) / iters)
    return statistics.median(samples)


def bench_row(shape, kernels, impl, precision, args, device):
    b, c, h, w = shape
    dtype = DTYPES[precision]
    gen = torch.Generator(device='cpu').manual_seed(0)
    ctx = torch.randn(b, h, w, c, generator=gen).to(device, dtype)
    gates = torch.randn(b, h, w, len(kernels) + 1, generator=gen).to(device, dtype)
    weights = [(torch.randn(c, 1, k, k, generator=gen) / k).to(device, dtype) for k in kernels]
    grad = torch.randn(b, c, h, w, generator=gen).to(device, dtype)
    row = dict(shape=list(shape), kernels=list(kernels), impl=impl, precision=precision,
               conv_backend=conv_backend(ctx, weights[0], impl), error=None)
    if device.type == 'cuda':
        tf32 = precision == 'tf32'
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    inputs = [ctx.requires_grad_(True), gates.requires_grad_(True)]
    params = [wt.requires_grad_(True) for wt in weights]

    def forward():
        return aggregate_context(ctx, gates, params, False, impl)

    def backward(targets):
        def run():
            out = forward()
            torch.autograd.grad(out, targets, grad.expand_as(out))
        return run

    timing = dict(repeats=args.repeats, iters=args.iters, warmup=args.warmup)
    try:
        row['fwd_ms'] = time_ms(forward, device, **timing)
        # each backward timing includes its forward: subtract it (autograd needs the graph)
        row['bwd_input_ms'] = time_ms(backward(inputs), device, **timing) - row['fwd_ms']
        row['bwd_all_ms'] = time_ms(backward(inputs + params), device, **timing) - row['fwd_ms']
        row['wgrad_ms'] = row['bwd_all_ms'] - row['bwd_input_ms']
        row['fwd_bwd_ms'] = row['fwd_ms'] + row['bwd_all_ms']
    except Exception as e:  # a failing row is reported, not fatal to the others
        row['error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'
    return row


def format_table(rows):
    lines = ['| B x C x H x W | precision | impl | conv backend | fwd ms | bwd input ms | '
             'wgrad ms | fwd+bwd ms |', '|---|---|---|---|---:|---:|---:|---:|']
    for r in rows:
        shape = 'x'.join(map(str, r['shape']))
        if r['error']:
            lines.append(f"| {shape} | {r['precision']} | {r['impl']} | {r['conv_backend']} | "
                         f"{r['error']} | | | |")
            continue
        lines.append(f"| {shape} | {r['precision']} | {r['impl']} | {r['conv_backend']} | "
                     f"{r['fwd_ms']:.3f} | {r['bwd_input_ms']:.3f} | {r['wgrad_ms']:.3f} | "
                     f"{r['fwd_bwd_ms']:.3f} |")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    rows = []
    total = len(args.shapes) * len(args.precisions) * len(args.impls)
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    started = time.perf_counter()
    try:
        for shape in args.shapes:
            for precision in args.precisions:
                for impl in args.impls:
                    row = bench_row(shape, args.kernels, impl, precision, args, device)
                    rows.append(row)
                    done = f'{row["fwd_bwd_ms"]:.3f} ms' if not row['error'] else row['error']
                    print(f'[{len(rows)}/{total} {time.perf_counter() - started:.0f}s] '
                          f'{"x".join(map(str, shape))} {precision} {impl}: {done}', flush=True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    table = format_table(rows)
    print(table)
    env = dict(torch=torch.__version__, device=str(device),
               gpu=torch.cuda.get_device_name(device) if device.type == 'cuda' else None,
               cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    try:
        import triton
        env['triton'] = triton.__version__
    except ImportError:
        env['triton'] = None
    out = args.out or osp.join('work_dirs', 'benchmarks',
                               f'focal_context_{device.type}_{time.strftime("%Y%m%d_%H%M%S")}.json')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(dict(env=env, args={k: v for k, v in vars(args).items()},
                       command=' '.join(sys.argv), results=rows, table=table), f, indent=2)
    print(f'wrote {out}')
    return rows


if __name__ == '__main__':
    main()
