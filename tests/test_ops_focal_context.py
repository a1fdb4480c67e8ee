"""Fast focal-modulation paths (focalnet_mm.ops) against the reference path.

CPU: the channels-last ``fast`` path and the model-owned kernel choice; the Triton kernels under
the Triton interpreter (TRITON_INTERPRET=1, in a subprocess because the variable is read when
kernels are defined). CUDA-only tests skip without a GPU and have time limits.
"""
import math
import textwrap
import time

import pytest
import torch

from focalnet_mm.models import FocalNet, set_focal_impl
from focalnet_mm.models.focal_modulation import FocalModulation
from focalnet_mm.ops import (
    AUTO_TABLE,
    CPU_FAST_MIN_POSITIONS,
    focal_context,
    requested_impl,
    resolve_impl,
    triton_available,
)

from conftest import build_once, run_triton_script


@pytest.fixture(autouse=True)
def _clean_dispatch(monkeypatch):
    monkeypatch.delenv('FOCALNET_IMPL', raising=False)


def _run(module, x, impl, dtype=None):
    """Output and gradients (input, every parameter) of one implementation."""
    module.impl = impl
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        out = module(x)
    weight = torch.linspace(-1, 1, out.numel(), device=x.device).view_as(out)
    (out.float() * weight).sum().backward()
    grads = [x.grad] + [p.grad for p in module.parameters()]
    return out.detach().float(), [g.float() for g in grads]


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize('normalize,postln', [(False, False), (True, True)])
def test_fast_matches_reference_forward_and_backward(normalize, postln):
    torch.manual_seed(0)
    module = FocalModulation(16, focal_window=3, focal_level=3, normalize_modulator=normalize,
                             use_postln_in_modulation=postln)
    x = torch.randn(2, 7, 9, 16)
    ref_out, ref_grads = _run(module, x, 'reference')
    out, grads = _run(module, x, 'fast')
    assert _rel(out, ref_out) < 1e-5
    assert len(grads) == len(ref_grads) == 1 + len(list(module.parameters()))
    for g, r in zip(grads, ref_grads):
        assert _rel(g, r) < 1e-5


def test_fast_backbone_matches_reference_and_cpu_default_is_reference():
    torch.manual_seed(0)
    model = FocalNet('tiny_lrf', embed_dim=16, depths=(1, 1, 2, 1), focal_windows=5).eval()
    x = torch.randn(1, 3, 60, 76)  # odd maps after padding: every level and the padding code run
    with torch.no_grad():
        default = model(x)
        ref = set_focal_impl(model, 'reference')(x)
        fast = set_focal_impl(model, 'fast')(x)
    for d, r, f in zip(default, ref, fast):
        assert torch.equal(d, r)  # auto on CPU is exactly the reference path
        assert _rel(f, r) < 1e-5
        assert f.shape == r.shape


def test_cpu_training_auto_takes_fast_on_large_maps_only_with_reference_gradients(monkeypatch):
    from focalnet_mm.models import focal_modulation
    torch.manual_seed(0)
    model = FocalNet('tiny_lrf', embed_dim=16, depths=(1, 1, 1, 1), focal_windows=5,
                     drop_path_rate=0.0).train()  # no stochastic depth: runs comparable
    x = torch.randn(1, 3, 112, 112)  # stage maps 28^2 (>= 24^2: fast), 14^2, 7^2, 4^2 (reference)
    fast_maps = []
    original = focal_modulation.aggregate_context

    def counting(ctx, gates, weights, normalize, impl):
        if impl != 'reference':
            fast_maps.append((tuple(ctx.shape[1:3]), impl))
        return original(ctx, gates, weights, normalize, impl)

    monkeypatch.setattr(focal_modulation, 'aggregate_context', counting)
    results = {}
    # a random projection of the outputs: (a mean of squares of LayerNorm outputs is nearly
    # constant, which would leave only rounding noise in the gradients)
    projections = [torch.randn(1, 16 * 2 ** i, 1, 1) for i in range(4)]
    for impl in ('auto', 'reference'):
        set_focal_impl(model, impl)
        model.zero_grad(set_to_none=True)
        outs = model(x)
        sum((o * w).mean() for o, w in zip(outs, projections)).backward()
        results[impl] = [o.detach() for o in outs] + [p.grad for p in model.parameters()]
    assert fast_maps == [((28, 28), 'fast')]  # auto ran fast once (stage 0); reference never
    for a, r in zip(results['auto'], results['reference']):
        assert _rel(a, r) < 1e-5


def test_channels_last_aggregation_makes_no_layout_copies():
    ctx_all = focal_context.aggregate_context_channels_last(
        torch.randn(2, 5, 6, 32)[..., :8], torch.randn(2, 5, 6, 3), [torch.randn(8, 1, 3, 3)] * 2,
        normalize_modulator=False)
    assert ctx_all.shape == (2, 8, 5, 6)
    # NCHW view of NHWC memory: ``h`` and ``proj`` read it with no permute copy
    assert ctx_all.permute(0, 2, 3, 1).is_contiguous()


def test_dispatch_order_and_errors(monkeypatch, caplog):
    x = torch.zeros(1)
    assert resolve_impl('auto', x, training=False) == 'reference'  # auto on CPU, inference
    # auto on CPU, training: channels-last from 24x24 maps up (faster backward there), not below
    side = math.isqrt(CPU_FAST_MIN_POSITIONS)
    large, small = torch.zeros(2, side, side, 8), torch.zeros(2, side - 1, side, 8)
    assert resolve_impl('auto', large, training=True) == 'fast'
    assert resolve_impl('auto', small, training=True) == 'reference'
    assert resolve_impl('auto', large, training=False) == 'reference'  # inference: on par
    assert resolve_impl('auto', large.to('meta'), training=True) == 'reference'  # other devices
    assert resolve_impl('fast', x, training=False) == 'fast'
    # the environment is read when a backbone is built; the explicit argument beats it
    monkeypatch.setenv('FOCALNET_IMPL', 'fast')
    assert requested_impl(None) == ('fast', 'FOCALNET_IMPL=fast')
    assert requested_impl('reference')[0] == 'reference'
    monkeypatch.setenv('FOCALNET_IMPL', 'cudnn')
    with pytest.raises(ValueError, match='FOCALNET_IMPL'):
        requested_impl(None)
    with pytest.raises(ValueError, match='impl argument'):
        requested_impl('fastest')
    monkeypatch.setattr(focal_context, '_TRITON_INTERPRET', False)
    if triton_available():
        with pytest.raises(RuntimeError, match="impl='fast'"):
            resolve_impl('triton', x, training=False)
    with pytest.raises(ValueError, match='no FocalModulation'):
        set_focal_impl(torch.nn.Linear(2, 2), 'fast')


def test_backbone_owns_the_choice_reads_env_once_and_logs_it(monkeypatch):
    from focalnet_mm.ops import focal_context as fc
    logged = []
    monkeypatch.setattr(fc, '_logged', set())
    monkeypatch.setattr(fc, 'print_log', lambda msg, logger=None: logged.append(msg))
    small = dict(embed_dim=8, depths=(1, 1, 1, 1), focal_windows=3)
    monkeypatch.setenv('FOCALNET_IMPL', 'fast')
    model = FocalNet('tiny_srf', **small)
    monkeypatch.setenv('FOCALNET_IMPL', 'reference')  # read at build time only
    impls = {m.impl for m in model.modules() if isinstance(m, FocalModulation)}
    assert model.impl == 'fast' and impls == {'fast'}
    assert logged == ["FocalNet impl 'fast' (from FOCALNET_IMPL=fast)"]
    explicit = FocalNet('tiny_srf', impl='auto', **small)  # the argument wins over the env
    assert {m.impl for m in explicit.modules() if isinstance(m, FocalModulation)} == {'auto'}
    assert logged[-1].startswith("FocalNet impl 'auto' (from the impl argument)")
    with torch.no_grad():
        explicit(torch.randn(1, 3, 32, 32))
        explicit(torch.randn(1, 3, 32, 32))
    picks = [m for m in logged if m.startswith('FocalNet impl auto ->')]
    assert len(picks) == 1 and "'reference' for cpu torch.float32 inference" in picks[0]
    with pytest.raises(ValueError, match='impl argument'):
        FocalNet('tiny_srf', impl='cuda', **small)


def test_auto_table_rows_say_where_they_come_from():
    for rule in AUTO_TABLE:
        assert rule.impl in ('reference', 'fast', 'triton')
        assert rule.basis.startswith(('measured', 'GUESS')), rule
    # every CUDA choice names the machine it was measured on, or is marked as a guess
    cuda = [r for r in AUTO_TABLE if r.device == 'cuda']
    assert cuda and all('measured on H200' in r.basis or 'GUESS' in r.basis for r in cuda)


@pytest.mark.parametrize('training,dtype,positions,kernel,expected', [
    # training: triton in every dtype on the stage maps where it was measured fastest ...
    (True, torch.float32, 200 * 336, 13, 'triton'),
    (True, torch.bfloat16, 100 * 168, 13, 'triton'),
    (True, torch.float16, 50 * 84, 13, 'triton'),
    (True, torch.float32, 56 * 56, 7, 'triton'),
    # ... and reference on the last stage's map (2x768x25x42), where reference was faster
    (True, torch.float32, 25 * 42, 13, 'reference'),
    (True, torch.bfloat16, 25 * 42, 13, 'reference'),
    # inference: fast with classification kernels in fp16 (measured at 224^2), triton with
    # detection kernels (the chain forward), fast as the marked guess for other dtypes
    (False, torch.float16, 56 * 56, 7, 'fast'),
    (False, torch.float16, 200 * 336, 13, 'triton'),
    (False, torch.float32, 25 * 42, 9, 'triton'),
    (False, torch.float32, 56 * 56, 5, 'fast'),
])
def test_cuda_auto_rows_follow_the_h200_measurements(training, dtype, positions, kernel, expected):
    rule = focal_context.auto_impl('cuda', dtype, training, positions, kernel)
    assert rule.impl == expected, rule
    if (not training) and dtype != torch.float16 and kernel <= 7:
        assert rule.basis.startswith('GUESS')
    else:
        assert rule.basis.startswith('measured on H200')


@pytest.mark.parametrize('features,expected', [(frozenset(), 'reference'),
                                               (frozenset({'avx512_bf16'}), 'fast')])
def test_cpu_bf16_training_row_depends_on_native_bf16(monkeypatch, features, expected):
    """bf16 is emulated without AVX512-BF16 (NCHW faster) and native with it (channels-last
    faster): the row follows the CPU it runs on; fp32 and small maps are unaffected."""
    monkeypatch.setattr(focal_context, 'CPU_FEATURES', features)
    assert focal_context.auto_impl('cpu', torch.bfloat16, True, 32 * 32, 7).impl == expected
    assert focal_context.auto_impl('cpu', torch.bfloat16, True, 8 * 8, 7).impl == 'reference'
    assert focal_context.auto_impl('cpu', torch.float32, True, 32 * 32, 7).impl == 'fast'
    assert focal_context.auto_impl('cpu', torch.bfloat16, False, 32 * 32, 7).impl == 'reference'


@pytest.mark.skipif(not triton_available(), reason='triton is not installed')
def test_triton_runs_the_measured_row_kernels_until_a_ranking_fills_the_tile_table(monkeypatch):
    from focalnet_mm.ops import triton_op, triton_tiled
    assert not triton_tiled.TILE_TABLE_BASIS.startswith('measured')
    assert triton_op.choose_kernels(96, 13, torch.float32) == 'rows'
    monkeypatch.setattr(triton_tiled, 'TILE_TABLE_BASIS', 'measured: a ranking run')
    monkeypatch.setattr(triton_tiled, 'TILE_TABLE', {(96, 13, 'fp32'): 'rows',
                                                     (96, 13, 'bf16'): triton_tiled.DEFAULT_CONFIG})
    assert triton_op.choose_kernels(96, 13, torch.float32) == 'rows'  # the rows won there
    assert triton_op.choose_kernels(96, 13, torch.float16) == 'tiled'  # fp16 reads the bf16 row
    assert triton_op.choose_kernels(192, 13, torch.float32) == 'rows'  # no row: the measured path
    with pytest.raises(ValueError, match="'rows', 'tiled'"):
        triton_op.focal_context_triton(torch.zeros(1, 2, 2, 4), torch.zeros(1, 2, 2, 2),
                                       [torch.zeros(4, 1, 3, 3)], 1.0, kernels='tile')


def test_auto_without_triton_installed_runs_reference_and_says_so(monkeypatch):
    logged = []
    monkeypatch.setattr(focal_context, '_logged', set())
    monkeypatch.setattr(focal_context, 'print_log', lambda msg, logger=None: logged.append(msg))
    monkeypatch.setattr(focal_context, '_TRITON_INSTALLED', False)
    monkeypatch.setattr(focal_context, 'AUTO_TABLE', (focal_context.AutoRule(
        'cpu', True, None, 'triton', 'measured: a table row that picks triton'), ))
    assert resolve_impl('auto', torch.zeros(1, 4, 4, 8), training=True) == 'reference'
    assert any('triton is not installed' in m and "'reference'" in m for m in logged), logged
    with pytest.raises(RuntimeError, match='pip install triton'):
        resolve_impl('triton', torch.zeros(1, 4, 4, 8), training=True)


def test_selected_impl_is_the_one_that_runs(monkeypatch):
    calls = []
    real = focal_context.aggregate_context_channels_last
    monkeypatch.setattr(focal_context, 'aggregate_context_channels_last',
                        lambda *a: calls.append(1) or real(*a))
    module = FocalModulation(8, focal_window=3, focal_level=2)
    x = torch.randn(1, 4, 4, 8)
    with torch.no_grad():
        module(x)  # auto on CPU: reference, inference and training alike
    module(x)
    assert calls == []
    module.impl = 'fast'
    with torch.no_grad():
        module(x)
    module(x)
    assert calls == [1, 1]
    # the visualisation recompute (modulator_and_gates) is the reference path whatever impl runs
    with torch.no_grad():
        q, modulator, gates = module.modulator_and_gates(x)
    assert calls == [1, 1]
    assert modulator.shape == (1, 8, 4, 4) and gates.shape == (1, 3, 4, 4)


_INTERPRETER_CHECK = textwrap.dedent('''
    import torch
    from focalnet_mm.models.focal_modulation import FocalModulation
    from focalnet_mm.ops import triton_focal
    from focalnet_mm.ops.focal_context import _aggregate_reference
    from focalnet_mm.ops.triton_op import focal_context_triton
    torch.manual_seed(0)

    def rel(a, b):
        return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()

    def report(name, value):
        print('CASE', name, value, flush=True)

    def op_vs_reference(shape, kernels, dtype, scale):
        """Worst relative error of the op's output and of every gradient (src, gates, each
        kernel) in ``dtype`` storage against fp32 reference math on the same rounded inputs."""
        B, H, W, C = shape
        src = torch.randn(B, H, W, C).to(dtype)
        gates = torch.randn(B, H, W, len(kernels) + 1).to(dtype)
        weights = [(0.3 * torch.randn(C, 1, k, k)).to(dtype) for k in kernels]
        leaves = [t.clone().requires_grad_(True) for t in (src, gates, *weights)]
        out = focal_context_triton(leaves[0], leaves[1], leaves[2:], scale)
        probe = torch.randn(out.shape)
        grads = torch.autograd.grad((out.float() * probe).sum(), leaves)
        ref_leaves = [t.float().requires_grad_(True) for t in (src, gates, *weights)]
        ref = _aggregate_reference(ref_leaves[0], ref_leaves[1], ref_leaves[2:], False)
        ref = scale * ref.permute(0, 2, 3, 1)
        ref_grads = torch.autograd.grad((ref * probe).sum(), ref_leaves)
        return max([rel(out, ref)] + [rel(g, r) for g, r in zip(grads, ref_grads)])

    # the module, fp32: output, input and every parameter gradient (kernels 3 and 5)
    worst = 0.0
    m = FocalModulation(8, focal_window=3, focal_level=2, normalize_modulator=True)
    x0 = torch.randn(1, 3, 5, 8)
    res = {}
    for impl in ('reference', 'triton'):
        m.impl = impl
        m.zero_grad(set_to_none=True)
        x = x0.clone().requires_grad_(True)
        out = m(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        res[impl] = [out.detach(), x.grad] + [p.grad for p in m.parameters()]
    report('module_fp32', max(rel(a, b) for a, b in zip(res['triton'], res['reference'])))

    # several tiles in every dimension: a 7x7 level takes BLOCK_C 64 and BLOCK_W 8, so C=72 is
    # two channel tiles (the second partial) and W=9 two column tiles (the second partial); the
    # 3x3 level one partial 128-channel tile; P = 18 pixels leaves a partial gate-backward block
    # of 16 (one image: the interpreter's time is per row; the next case has two)
    assert triton_focal.conv_tiles(72, 7) == (8, 64), triton_focal.conv_tiles(72, 7)
    report('tiles_fp32', op_vs_reference((1, 2, 9, 72), [3, 7], torch.float32, 1 / 3))
    # two images (batch indexing) and a partial last weight-gradient group: B*H = 10 rows in
    # groups of 3 (4 groups, the last has 1)
    triton_focal._WGRAD_GROUPS = 4
    report('partial_group_fp32', op_vs_reference((2, 5, 3, 8), [3, 5], torch.float32, 1.0))
    triton_focal._WGRAD_GROUPS = 64
    # fp16 / bf16 storage (fp32 math in the kernels) on a small odd shape
    for dtype in (torch.float16, torch.bfloat16):
        report(f'small_{dtype}', op_vs_reference((2, 3, 4, 5), [3], dtype, 0.5))
    # fp16 storage over several tiles
    report('tiles_torch.float16', op_vs_reference((2, 2, 9, 72), [7], torch.float16, 0.5))
''')


@pytest.fixture(scope='session')
def interpreter_cases(tmp_path_factory):
    """Every case above, in one interpreter process (it imports the stack once), once per test
    run whatever the pytest-xdist workers (conftest.build_once)."""
    def build(folder):
        stdout = run_triton_script(_INTERPRETER_CHECK, timeout=280)
        return {line.split()[1]: float(line.split()[2]) for line in stdout.splitlines()
                if line.startswith('CASE')}
    return build_once(tmp_path_factory, 'triton_row_kernels_interpreter_cases', build)


@pytest.mark.slow  # the interpreter: ~15 s even at these sizes (run this file when editing kernels)
@pytest.mark.skipif(not triton_available(), reason='triton is not installed')
@pytest.mark.timeout(300)
def test_triton_kernels_match_reference_under_interpreter(interpreter_cases):
    for name in ('module_fp32', 'tiles_fp32', 'partial_group_fp32'):
        assert interpreter_cases[name] < 1e-5, (name, interpreter_cases)
    # fp16 storage keeps 11 significant bits, bf16 8: relative errors of a few ulps of the output
    assert interpreter_cases['small_torch.float16'] < 1e-2, interpreter_cases
    assert interpreter_cases['small_torch.bfloat16'] < 5e-2, interpreter_cases


@pytest.mark.slow
@pytest.mark.skipif(not triton_available(), reason='triton is not installed')
@pytest.mark.timeout(300)
def test_triton_kernels_in_half_precision_over_several_tiles_under_interpreter(interpreter_cases):
    assert interpreter_cases['tiles_torch.float16'] < 1e-2, interpreter_cases


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@cuda
@pytest.mark.timeout(180)
@pytest.mark.parametrize('impl', ['fast', 'triton'])
@pytest.mark.parametrize('dtype,tol', [(None, 1e-4), (torch.float16, 2e-2), (torch.bfloat16, 5e-2)])
def test_gpu_impl_matches_reference(impl, dtype, tol):
    if impl == 'triton' and not triton_available():
        pytest.skip('triton is not installed')
    torch.manual_seed(0)
    module = FocalModulation(96, focal_window=9, focal_level=3, normalize_modulator=True).cuda()
    x = torch.randn(2, 37, 45, 96, device='cuda')
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ref_out, ref_grads = _run(module, x, 'reference', dtype)
        out, grads = _run(module, x, impl, dtype)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    assert _rel(out, ref_out) < tol
    for g, r in zip(grads, ref_grads):
        assert _rel(g, r) < tol


def _compiled_variants(kernel):
    caches = getattr(kernel, 'device_caches', None)
    if caches is None:
        pytest.skip('this triton has no JITFunction.device_caches to count compiled kernels')
    return sum(len(entry[0]) for entry in caches.values())


@cuda
@pytest.mark.timeout(240)
def test_gpu_triton_is_deterministic_and_multiscale_compiles_nothing_new():
    if not triton_available():
        pytest.skip('triton is not installed')
    from focalnet_mm.ops import triton_focal
    torch.manual_seed(0)
    module = FocalModulation(96, focal_window=9, focal_level=3, impl='triton').cuda()
    x = torch.randn(2, 50, 84, 96, device='cuda')
    first = _run(module, x, 'triton')[1]
    second = _run(module, x, 'triton')[1]
    for a, b in zip(first, second):
        assert torch.equal(a, b)  # no atomics anywhere in the gradients
    kernels = (triton_focal._dwconv_nhwc_kernel, triton_focal._gate_gelu_bwd_kernel,
               triton_focal._dw_weight_grad_kernel)
    before = [_compiled_variants(k) for k in kernels]
    for h, w in ((47, 83), (64, 61), (33, 100)):  # new shapes of a multi-scale schedule
        _run(module, torch.randn(2, h, w, 96, device='cuda'), 'triton')
    assert [_compiled_variants(k) for k in kernels] == before


@cuda
@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize('amp', [False, True])
def test_gpu_triton_trains_at_detection_shapes(amp):
    """A few SGD steps of FocalNet-T [9, 11, 13] with impl='triton' at a detection size (the
    size at which the old kernels never finished): finite losses, no step after the first
    compiles anything."""
    if not triton_available():
        pytest.skip('triton is not installed')
    torch.manual_seed(0)
    model = FocalNet('tiny_lrf', focal_windows=9, impl='triton', drop_path_rate=0.0).cuda().train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(2, 3, 413, 627, device='cuda')
    times, losses = [], []
    for _ in range(4):
        start = time.perf_counter()
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=amp):
            loss = sum(o.float().square().mean() for o in model(x))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses), losses
    # compiled once in step 1 (seconds of Triton JIT), then plain kernel launches: every later
    # step is faster than the first (a comparison, not a wall-clock threshold)
    assert max(times[1:]) < times[0], times


@cuda
def test_gpu_auto_trains_on_triton_and_infers_on_fast_with_small_kernels():
    x = torch.zeros(2, 64, 64, 16, device='cuda')
    assert resolve_impl('auto', x, training=True, max_kernel=13) == (
        'triton' if triton_available() else 'reference')
    assert resolve_impl('auto', x.half(), training=False, max_kernel=7) == 'fast'
