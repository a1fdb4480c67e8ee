"""Micro-benchmark of FocalNet's context chain alone (depthwise conv -> GELU -> gate -> accumulate,
L levels, then the global level), per implementation x precision, forward and backward apart.

    # the Mask R-CNN stage shapes (B=2 at 800x1344), kernels [9, 11, 13], every impl and precision
    python tools/analysis_tools/benchmark_focal_context.py --device cuda
    # CPU smoke run at tiny sizes
    python tools/analysis_tools/benchmark_focal_context.py --device cpu --shapes 2x16x12x16 \\
        --precisions fp32 bf16 --repeats 2 --iters 2
    # rank the tiled kernels' tile candidates (focalnet_mm.ops.triton_tiled.CANDIDATES) against
    # the row kernels (impl triton) and reference, fwd+bwd, fp32 and bf16; prints the TILE_TABLE
    python tools/analysis_tools/benchmark_focal_context.py --candidates

Per row: ``fwd`` (forward with autograd recording), ``bwd_input`` (backward to the inputs ctx and
gates only, kernels frozen), ``bwd_all`` (backward to inputs and kernels);
``wgrad = bwd_all - bwd_input`` is the weight gradient's share (autograd cannot compute a level's
kernel gradient without the input gradients of the levels after it). ``fp32`` runs with TF32 off,
``tf32`` with TF32 on for cuDNN and matmuls, ``bf16``/``fp16`` with every tensor in that dtype
(what autocast hands the chain). ``conv_backend`` is what ``torch._C._select_conv_backend``
picks for the first level's convolution in the memory layout the implementation uses.

``--candidates``: every tile candidate of the tiled kernels runs the whole chain (forward and the
backward to ctx, gates and every kernel, called directly, no autograd) after its outputs and
gradients were checked against ``reference`` (fp32 math on the same rounded inputs; a candidate
that fails is reported and not ranked); ``triton`` (the row kernels) and ``reference`` run
through autograd as above. The fastest candidate per (C, precision) is written for each kernel
size of the chain as a ready-to-paste ``TILE_TABLE`` (printed, and saved as .py next to the JSON).
On CUDA, worker processes compile every kernel variant in parallel first (Triton's disk cache),
so the timed process compiles nothing. On CPU it runs under ``TRITON_INTERPRET=1`` (tests).
"""
import argparse
import functools
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
    p.add_argument('--repeats', type=int, default=None,
                   help='timed repeats, median reported (default 5; 3 with --candidates)')
    p.add_argument('--iters', type=int, default=None,
                   help='iterations per repeat (default 10; 5 with --candidates)')
    p.add_argument('--warmup', type=int, default=None, help='default 3; 2 with --candidates')
    p.add_argument('--out', default=None, help='JSON file (default work_dirs/benchmarks/...)')
    p.add_argument('--candidates', action='store_true',
                   help='rank the tiled kernels\' tile candidates against triton and reference '
                   '(fp32 and bf16 by default) and print the TILE_TABLE they choose')
    p.add_argument('--candidate-names', nargs='+', default=None,
                   help='--candidates: time only these (default: every candidate)')
    p.add_argument('--compile-workers', type=int, default=None,
                   help='--candidates on CUDA: processes compiling the kernel variants before '
                   'timing (default min(8, CPUs); 0: compile while timing)')
    args = p.parse_args(argv)
    for name, default, short in (('repeats', 5, 3), ('iters', 10, 5), ('warmup', 3, 2)):
        if getattr(args, name) is None:  # --candidates: 6 rows per shape, a minute in all
            setattr(args, name, short if args.candidates else default)
    cuda = args.device.startswith('cuda')
    if cuda and not torch.cuda.is_available():
        p.error('--device cuda but torch.cuda.is_available() is False; use --device cpu.')
    if min(args.repeats, args.iters) < 1 or args.warmup < 0:
        p.error('--repeats and --iters must be >= 1, --warmup >= 0.')
    if any(k % 2 == 0 or k < 1 for k in args.kernels):
        p.error('--kernels must be odd positive sizes (same padding).')
    args.shapes = args.shapes or [parse_shape(s) for s in MASKRCNN_SHAPES]
    if args.candidates:
        if args.impls is not None:
            p.error('--impls does not apply to --candidates (it times every candidate, triton '
                    'and reference); drop --impls.')
        if not triton_available():
            p.error('--candidates needs the triton package (pip install triton).')
        if not cuda and os.environ.get('TRITON_INTERPRET') != '1':
            p.error('--candidates on CPU runs the Triton interpreter: set TRITON_INTERPRET=1 '
                    '(tiny --shapes only) or use --device cuda.')
        args.precisions = args.precisions or ['fp32', 'bf16']
        from focalnet_mm.ops.triton_tiled import CANDIDATES
        unknown = set(args.candidate_names or ()) - set(CANDIDATES)
        if unknown:
            p.error(f'--candidate-names {sorted(unknown)}: use names from {sorted(CANDIDATES)}.')
        args.candidate_names = args.candidate_names or list(CANDIDATES)
        if 'tf32' in args.precisions:
            p.error('--candidates times fp32 (TF32 off), bf16 and fp16; drop tf32.')
        if args.compile_workers is None:
            args.compile_workers = min(8, os.cpu_count() or 1) if cuda else 0
        if args.compile_workers < 0:
            p.error('--compile-workers must be >= 0.')
        return args
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


def make_inputs(shape, kernels, dtype, device):
    """ctx (B, H, W, C), gates, kernels and an output gradient (B, C, H, W), seeded."""
    b, c, h, w = shape
    gen = torch.Generator(device='cpu').manual_seed(0)
    ctx = torch.randn(b, h, w, c, generator=gen).to(device, dtype)
    gates = torch.randn(b, h, w, len(kernels) + 1, generator=gen).to(device, dtype)
    weights = [(torch.randn(c, 1, k, k, generator=gen) / k).to(device, dtype) for k in kernels]
    grad = torch.randn(b, c, h, w, generator=gen).to(device, dtype)
    return ctx, gates, weights, grad


def bench_row(shape, kernels, impl, precision, args, device):
    ctx, gates, weights, grad = make_inputs(shape, kernels, DTYPES[precision], device)
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


def environment(device):
    env = dict(torch=torch.__version__, device=str(device),
               gpu=torch.cuda.get_device_name(device) if device.type == 'cuda' else None,
               cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    try:
        import triton
        env['triton'] = triton.__version__
    except ImportError:
        env['triton'] = None
    return env


def out_path(args, device, kind):
    out = args.out or osp.join('work_dirs', 'benchmarks',
                               f'{kind}_{device.type}_{time.strftime("%Y%m%d_%H%M%S")}.json')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    return out


# ------------------------------------------------------------------------------ --candidates
#: numerics gate before timing (max abs error relative to max abs of the fp32 reference)
CANDIDATE_TOL = dict(fp32=1e-4, bf16=5e-2, fp16=2e-2)


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


def _tiled_step(tiled, cfg, ctx, gates, weights, grad_nhwc):
    acc, mean, pres = tiled.chain_forward(ctx, gates, weights, 1.0, cfg)
    grads = tiled.chain_backward(grad_nhwc, ctx, gates, mean, weights, pres, 1.0, True,
                                 [True] * len(weights), cfg)
    return acc, grads


def check_candidate(tiled, cfg, ctx, gates, weights, grad):
    """Max relative error of a candidate's output and gradients vs fp32 reference math."""
    leaves = [t.float().requires_grad_(True) for t in (ctx, gates, *weights)]
    ref = aggregate_context(leaves[0], leaves[1], leaves[2:], False, 'reference')
    ref_grads = torch.autograd.grad(ref, leaves, grad.float())
    acc, (g_src, g_gates, g_weights) = _tiled_step(tiled, cfg, ctx, gates, weights,
                                                   grad.permute(0, 2, 3, 1).contiguous())
    got = [acc.permute(0, 3, 1, 2), g_src, g_gates, *g_weights]
    return max(_rel(a, b) for a, b in zip(got, [ref, *ref_grads]))


def _warm_compile(job):
    """Worker: run every kernel variant once at a tiny size so Triton's disk cache holds it."""
    name, precision, channels, kernels, device = job
    sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
    from focalnet_mm.ops import triton_tiled as tiled
    for c in channels:
        ctx, gates, weights, grad = make_inputs((2, c, 9, 11), kernels, DTYPES[precision],
                                                torch.device(device))
        if name is None:  # the row kernels, through autograd
            leaves = [ctx.requires_grad_(True), gates.requires_grad_(True),
                      *[w.requires_grad_(True) for w in weights]]
            out = aggregate_context(leaves[0], leaves[1], leaves[2:], False, 'triton')
            torch.autograd.grad(out, leaves, grad)
        else:
            _tiled_step(tiled, tiled.CANDIDATES[name], ctx, gates, weights,
                        grad.permute(0, 2, 3, 1).contiguous())
    torch.cuda.synchronize()
    return name, precision


def warm_compile(args, names):
    import multiprocessing
    channels = sorted({s[1] for s in args.shapes})
    jobs = [(n, p, channels, args.kernels, args.device) for p in args.precisions
            for n in list(names) + [None]]
    started = time.perf_counter()
    with multiprocessing.get_context('spawn').Pool(min(args.compile_workers, len(jobs))) as pool:
        for done, (name, precision) in enumerate(pool.imap_unordered(_warm_compile, jobs), 1):
            print(f'[compile {done}/{len(jobs)} {time.perf_counter() - started:.0f}s] '
                  f'{name or "triton (row kernels)"} {precision}', flush=True)


def rank_candidates(rows, kernels):
    """{(C, K, precision): winning row} from the timed rows (numerics passed): every tiled
    candidate and the row kernels (``impl='triton'``, written as ``'rows'``) compete."""
    best = {}
    for r in rows:
        if r['impl'] not in ('tiled', 'triton') or r['error']:
            continue
        key = (r['shape'][1], r['precision'])
        if key not in best or r['fwd_bwd_ms'] < best[key]['fwd_bwd_ms']:
            best[key] = r
    return {(c, k, p): r for (c, p), r in best.items() for k in kernels}


def table_snippet(winners, rows, env, command):
    """The ready-to-paste TILE_TABLE for focalnet_mm/ops/triton_tiled.py."""
    others = {(tuple(r['shape']), r['precision'], r['impl']): r for r in rows
              if r['impl'] != 'tiled' and not r['error']}
    lines = [f"TILE_TABLE_BASIS = 'measured: {env['gpu'] or env['device']}, torch {env['torch']}, "
             f"triton {env['triton']}, {time.strftime('%Y-%m-%d')}: {command}'",
             'TILE_TABLE: Dict[Tuple[int, int, str], str] = {']
    for (c, k, p), r in sorted(winners.items()):
        shape = tuple(r['shape'])
        vs = ', '.join(f"{impl} {others[(shape, p, impl)]['fwd_bwd_ms']:.2f}"
                       for impl in ('triton', 'reference') if (shape, p, impl) in others)
        name = r['candidate'] if r['impl'] == 'tiled' else 'rows'
        lines.append(f"    ({c}, {k}, '{p}'): '{name}',  # {r['fwd_bwd_ms']:.2f} ms"
                     f" fwd+bwd at {'x'.join(map(str, shape))}" + (f' ({vs})' if vs else ''))
    lines.append('}')
    return '\n'.join(lines)


def candidate_rows(shape, precision, args, device, tiled):
    """Timed rows of every candidate (numerics checked first), triton and reference."""
    ctx, gates, weights, grad = make_inputs(shape, args.kernels, DTYPES[precision], device)
    grad_nhwc = grad.permute(0, 2, 3, 1).contiguous()
    timing = dict(repeats=args.repeats, iters=args.iters, warmup=args.warmup)
    for name in args.candidate_names:
        cfg = tiled.CANDIDATES[name]
        row = dict(shape=list(shape), kernels=list(args.kernels), impl='tiled', candidate=name,
                   precision=precision, error=None)
        try:
            row['max_rel_err'] = check_candidate(tiled, cfg, ctx, gates, weights, grad)
            if not row['max_rel_err'] <= CANDIDATE_TOL[precision]:
                row['error'] = (f"numerics: max rel err {row['max_rel_err']:.2e} > "
                                f'{CANDIDATE_TOL[precision]:.0e}')
            else:
                row['fwd_ms'] = time_ms(
                    functools.partial(tiled.chain_forward, ctx, gates, weights, 1.0, cfg),
                    device, **timing)
                row['fwd_bwd_ms'] = time_ms(
                    functools.partial(_tiled_step, tiled, cfg, ctx, gates, weights, grad_nhwc),
                    device, **timing)
        except Exception as e:  # reported, not fatal to the other candidates
            row['error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'
        yield row
    for impl in ('triton', 'reference'):
        row = bench_row(shape, args.kernels, impl, precision, args, device)
        row['candidate'] = None
        yield row


def main_candidates(args, device):
    from focalnet_mm.ops import triton_tiled as tiled
    if args.compile_workers and device.type == 'cuda':
        warm_compile(args, args.candidate_names)
    rows = []
    total = len(args.shapes) * len(args.precisions) * (len(args.candidate_names) + 2)
    started = time.perf_counter()
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    # the 'triton' rows are the row kernels (a candidate like the tiles): a table measured by an
    # earlier run, which may send impl='triton' to the tiles, is set aside while ranking
    basis = tiled.TILE_TABLE_BASIS
    tiled.TILE_TABLE_BASIS = 'set aside while ranking'
    try:
        if device.type == 'cuda':  # fp32 means fp32: no TF32 in the reference
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        for shape in args.shapes:
            for precision in args.precisions:
                for row in candidate_rows(shape, precision, args, device, tiled):
                    rows.append(row)
                    done = row['error'] or f"{row['fwd_bwd_ms']:.3f} ms"
                    print(f'[{len(rows)}/{total} {time.perf_counter() - started:.0f}s] '
                          f'{"x".join(map(str, shape))} {precision} '
                          f'{row["candidate"] or row["impl"]}: {done}', flush=True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        tiled.TILE_TABLE_BASIS = basis
    lines = ['| B x C x H x W | precision | impl / candidate | max rel err | fwd ms | '
             'fwd+bwd ms |', '|---|---|---|---:|---:|---:|']
    for r in rows:
        err = f"{r['max_rel_err']:.1e}" if 'max_rel_err' in r else ''
        timed = (f"{r['fwd_ms']:.3f} | {r['fwd_bwd_ms']:.3f}" if not r['error']
                 else f"{r['error']} |")
        lines.append(f"| {'x'.join(map(str, r['shape']))} | {r['precision']} | "
                     f"{r['candidate'] or r['impl']} | {err} | {timed} |")
    table = '\n'.join(lines)
    env = environment(device)
    command = 'python tools/analysis_tools/benchmark_focal_context.py ' + ' '.join(
        sys.argv[1:] if osp.basename(sys.argv[0]) == 'benchmark_focal_context.py' else
        ['--candidates'])
    winners = rank_candidates(rows, args.kernels)
    snippet = table_snippet(winners, rows, env, command)
    print(table)
    print('\n# paste into focalnet_mm/ops/triton_tiled.py:')
    print(snippet)
    out = out_path(args, device, 'focal_context_candidates')
    with open(out, 'w') as f:
        json.dump(dict(env=env, args=vars(args), command=command, results=rows, table=table,
                       tile_table={f'{c},{k},{p}': r['candidate'] or 'rows'
                                   for (c, k, p), r in winners.items()},
                       tile_table_py=snippet), f, indent=2)
    with open(osp.splitext(out)[0] + '_tile_table.py', 'w') as f:
        f.write(snippet + '\n')
    print(f'wrote {out} ({time.perf_counter() - started:.0f}s)')
    return rows, winners


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.candidates:
        return main_candidates(args, device)
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
    env = environment(device)
    out = out_path(args, device, 'focal_context')
    with open(out, 'w') as f:
        json.dump(dict(env=env, args={k: v for k, v in vars(args).items()},
                       command=' '.join(sys.argv), results=rows, table=table), f, indent=2)
    print(f'wrote {out}')
    return rows


if __name__ == '__main__':
    main()
