"""Fast focal-modulation paths (focalnet_mm.ops) against the reference path.

CPU: the channels-last ``fast`` path and the dispatch rules; the Triton kernels under the Triton
interpreter (TRITON_INTERPRET=1, in a subprocess because the variable is read when kernels are
defined). CUDA-only tests skip without a GPU.
"""
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from focalnet_mm.models import FocalNet
from focalnet_mm.models.focal_modulation import FocalModulation
from focalnet_mm.ops import (CPU_FAST_MIN_POSITIONS, focal_context, resolve_impl, set_focal_impl,
                             set_impl, triton_available)


@pytest.fixture(autouse=True)
def _clean_dispatch(monkeypatch):
    monkeypatch.delenv('FOCALNET_IMPL', raising=False)
    set_impl(None)
    yield
    set_impl(None)


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
    original = focal_modulation.focal_modulation_channels_last

    def counting(module, y, impl):
        fast_maps.append((tuple(y.shape[1:3]), impl))
        return original(module, y, impl)

    monkeypatch.setattr(focal_modulation, 'focal_modulation_channels_last', counting)
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


def test_dispatch_order_and_errors(monkeypatch):
    x = torch.zeros(1)
    assert resolve_impl(None, x) == 'reference'  # auto on CPU, inference
    # auto on CPU, training: channels-last from 24x24 maps up (faster backward there), not below
    side = math.isqrt(CPU_FAST_MIN_POSITIONS)
    large, small = torch.zeros(2, side, side, 8), torch.zeros(2, side - 1, side, 8)
    assert resolve_impl(None, large, needs_grad=True) == 'fast'
    assert resolve_impl(None, small, needs_grad=True) == 'reference'
    assert resolve_impl(None, large, needs_grad=False) == 'reference'  # inference: on par
    assert resolve_impl('auto', large.to('meta'), needs_grad=True) == 'reference'  # other devices
    monkeypatch.setenv('FOCALNET_IMPL', 'fast')
    assert resolve_impl(None, x) == 'fast'
    set_impl('reference')  # process-wide beats the environment
    assert resolve_impl(None, x) == 'reference'
    assert resolve_impl('fast', x) == 'fast'  # the module's own setting beats both
    monkeypatch.setenv('FOCALNET_IMPL', 'cudnn')
    set_impl(None)
    with pytest.raises(ValueError, match='FOCALNET_IMPL'):
        resolve_impl(None, x)
    with pytest.raises(ValueError, match='set_impl'):
        set_impl('fastest')
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    if triton_available():
        with pytest.raises(RuntimeError, match='FOCALNET_IMPL=fast'):
            resolve_impl('triton', x)
    with pytest.raises(ValueError, match='no FocalModulation'):
        set_focal_impl(torch.nn.Linear(2, 2), 'fast')


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
    monkeypatch.setenv('FOCALNET_IMPL', 'fast')
    with torch.no_grad():
        module(x)
    module(x)
    assert calls == [1, 1]
    # an instance-patched modulator_and_gates (visualisation tap) keeps the reference path
    module.modulator_and_gates = module.modulator_and_gates
    module(x)
    assert calls == [1, 1]


_INTERPRETER_CHECK = textwrap.dedent('''
    import torch
    from focalnet_mm.models.focal_modulation import FocalModulation
    torch.manual_seed(0)
    worst = 0.0
    for normalize, levels, dim in ((False, 2, 8), (True, 1, 5)):
        m = FocalModulation(dim, focal_window=3, focal_level=levels, normalize_modulator=normalize)
        x0 = torch.randn(1, 5, 6, dim)
        res = {}
        for impl in ('reference', 'triton'):
            m.impl = impl
            m.zero_grad(set_to_none=True)
            x = x0.clone().requires_grad_(True)
            out = m(x)
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
            res[impl] = [out.detach(), x.grad] + [p.grad for p in m.parameters()]
        for a, b in zip(res['triton'], res['reference']):
            worst = max(worst, ((a - b).abs().max() / b.abs().max()).item())
    print('WORST', worst)
''')


@pytest.mark.skipif(not triton_available(), reason='triton is not installed')
def test_triton_kernels_match_reference_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET='1', FOCALNET_IMPL='auto')
    proc = subprocess.run([sys.executable, '-c', _INTERPRETER_CHECK], env=env, capture_output=True,
                          text=True, timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    worst = float(proc.stdout.split('WORST')[-1])
    assert worst < 1e-5, worst


# ------------------------------------------------------------------------------- GPU only
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@cuda
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


@cuda
def test_gpu_auto_picks_a_fast_path():
    assert resolve_impl(None, torch.zeros(1, device='cuda')) in ('fast', 'triton')
