"""Every FocalNet impl x activation checkpointing x train/eval x torch.compile, against reference.

The pairs users run, not only the default: two bugs reached main because only the default impl
was tested with ``with_cp`` (triton read its saved tensors twice, which non-reentrant
checkpointing forbids) and under ``torch.compile`` (triton logged inside the compiled region, a
graph break per block). Every comparison is with ``reference``, the timm-exact path, on a
well-conditioned loss: a fixed random projection of every output (the mean square of
LayerNorm'd features has a gradient of ~0, which would hide wrong gradients).

``triton`` runs under the Triton interpreter (TRITON_INTERPRET=1) in a subprocess, because triton
reads the variable when kernels are defined.

The bugs above need a block inside a stage, a downsample and a second stage, not FocalNet-T's
size: every model here has two stages of one block each (channels 8 and 16) on small maps, so the
quick loop stays quick (the interpreter costs per program, dynamo per traced module).
"""
import json
import textwrap

import pytest
import torch

from focalnet_mm.models import FocalNet
from focalnet_mm.ops import focal_context, triton_available

from conftest import build_once, run_triton_script

#: two stages (a block, the downsample, a block), every output normed
SMALL = dict(embed_dim=8, depths=(1, 1), focal_windows=3, drop_path_rate=0.0, out_indices=(0, 1))
#: stage-0 map 25x29 = 725 positions: CPU training ``auto`` takes ``fast`` there (>= 24x24) and
#: ``reference`` in stage 1 (13x15), so ``auto`` mixes both
SIZE = (2, 3, 100, 116)


@pytest.fixture(autouse=True)
def _no_env_impl(monkeypatch):
    monkeypatch.delenv('FOCALNET_IMPL', raising=False)


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


def _outputs_and_grads(model, x, projections, train):
    """Outputs, the input gradient and every parameter gradient of a projected loss."""
    model.train(train)
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    outs = model(x)
    sum((o * p).sum() for o, p in zip(outs, projections)).backward()
    return [o.detach() for o in outs] + [x.grad] + [p.grad for p in model.parameters()]


@pytest.fixture(scope='module')
def reference_run():
    torch.manual_seed(0)
    x = torch.randn(SIZE)
    model = FocalNet('tiny_lrf', impl='reference', **SMALL)
    with torch.no_grad():
        projections = [torch.randn_like(o) for o in model(x)]
    return model, x, projections, {
        train: _outputs_and_grads(model, x, projections, train) for train in (False, True)}


@pytest.mark.parametrize('train', [False, True], ids=['eval', 'train'])
@pytest.mark.parametrize('with_cp', [False, True], ids=['no_cp', 'with_cp'])
@pytest.mark.parametrize('impl', ['reference', 'fast', 'auto'])
def test_every_impl_with_and_without_checkpointing_matches_reference(reference_run, impl, with_cp,
                                                                      train):
    ref_model, x, projections, expected = reference_run
    model = FocalNet('tiny_lrf', impl=impl, with_cp=with_cp, **SMALL)
    model.load_state_dict(ref_model.state_dict())
    got = _outputs_and_grads(model, x, projections, train)
    assert len(got) == len(expected[train])
    for g, e in zip(got, expected[train]):
        assert g is not None and _rel(g, e) < 1e-5


def _counting_backend(graphs, backend):
    compile_graph = torch._dynamo.lookup_backend(backend)

    def count(gm, example_inputs):
        graphs.append(gm)
        return compile_graph(gm, example_inputs)
    return count


def _compile_and_compare(ref_model, impl, backend, modes, sizes, dynamic=None):
    """fullgraph=True raises on any graph break; every (mode, size) is compared with eager."""
    model = FocalNet('tiny_lrf', impl=impl, **SMALL)
    model.load_state_dict(ref_model.state_dict())
    torch._dynamo.reset()
    graphs = []
    compiled = torch.compile(model, fullgraph=True, backend=_counting_backend(graphs, backend),
                             dynamic=dynamic)
    gen = torch.Generator().manual_seed(1)
    for train in modes:
        for size in sizes:
            x = torch.randn((2, 3) + size, generator=gen)
            with torch.no_grad():
                projections = [torch.randn(o.shape, generator=gen) for o in model.eval()(x)]
            eager = _outputs_and_grads(model, x, projections, train)
            # the eager run logged auto's pick for this mode (once per process): forgotten, so
            # the trace meets the first call of a process, where a log call breaks the graph
            focal_context._logged.clear()
            got = _outputs_and_grads(compiled, x, projections, train)
            for g, e in zip(got, eager):
                assert _rel(g, e) < 1e-5
    # at most one graph per (mode, size), never a forward split into pieces
    assert 1 <= len(graphs) <= len(modes) * len(sizes)


@pytest.mark.timeout(600)
@pytest.mark.parametrize('train', [pytest.param(False, marks=pytest.mark.slow), True],
                         ids=['eval', 'train'])
@pytest.mark.parametrize('impl', [
    # auto: the one that logs its pick, the graph break that reached main; the others whole suite
    pytest.param('reference', marks=pytest.mark.slow), pytest.param('fast', marks=pytest.mark.slow),
    'auto'])
def test_compiled_backbone_has_no_graph_breaks(reference_run, impl, train):
    """Dynamo's trace (the part that breaks graphs), two input sizes: the second recompiles for
    the new shape (for ``auto`` in CPU training it also crosses the 24x24 map size where the
    choice changes, so training is the quick case), which must not break the graph either.
    Static shapes here (half the trace time); the AOTAutograd test below recompiles with dynamic
    shapes."""
    _compile_and_compare(reference_run[0], impl, 'eager', (train, ), ((64, 72), SIZE[2:]),
                         dynamic=False)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_compiled_backbone_through_aot_autograd_matches_eager(reference_run):
    """AOTAutograd (what inductor builds on) traces forward and backward of ``auto``; the second
    size recompiles with dynamic shapes (torch.compile's default)."""
    _compile_and_compare(reference_run[0], 'auto', 'aot_eager', (True, ), ((64, 72), SIZE[2:]))


_TRITON_MATRIX = textwrap.dedent('''
    import json, sys, traceback
    import torch
    import torch.utils.checkpoint as cp
    from mmengine.config import Config
    from focalnet_mm.models import FocalNet
    from focalnet_mm.ops import focal_context
    from focalnet_mm.ops.focal_context import _aggregate_reference
    from focalnet_mm.ops.triton_op import focal_context_triton
    sys.path.insert(0, 'tests')
    from test_impl_matrix import _outputs_and_grads as run, _rel as rel
    results = {}

    def worst(a, b):
        assert len(a) == len(b) and all(t is not None for t in a), 'missing gradients'
        return max(rel(s, t) for s, t in zip(a, b))

    torch.manual_seed(0)
    # two stages of one block (maps 5x6 and 3x3), one image: the interpreter's time grows with
    # the rows it runs (the op below has two images)
    small = dict(embed_dim=8, depths=(1, 1), focal_windows=3, drop_path_rate=0.0, out_indices=(0, 1))
    x = torch.randn(1, 3, 20, 24)
    ref = FocalNet('tiny_lrf', impl='reference', **small)
    with torch.no_grad():
        projections = [torch.randn_like(o) for o in ref(x)]
    expected = {train: run(ref, x, projections, train) for train in (False, True)}

    def part_eager(results):  # the backbone and the op, with and without checkpointing
        # the backbone with and without with_cp (non-reentrant checkpointing, active in training
        # only: in eval mode the triton blocks run as without it)
        for with_cp in (False, True):
            model = FocalNet('tiny_lrf', impl='triton', with_cp=with_cp, **small)
            model.load_state_dict(ref.state_dict())
            results[f'backbone cp={with_cp} train=True'] = worst(
                run(model, x, projections, True), expected[True])
        # the op under both checkpointing modes
        src = torch.randn(2, 3, 7, 8, requires_grad=True)
        gates = torch.randn(2, 3, 7, 3, requires_grad=True)
        weights = [torch.randn(8, 1, k, k, requires_grad=True) for k in (3, 5)]
        leaves = [src, gates, *weights]
        probe = torch.randn(2, 3, 7, 8)
        want = 0.5 * _aggregate_reference(src, gates, weights, False).permute(0, 2, 3, 1)
        want = torch.autograd.grad((want * probe).sum(), leaves)
        for kernels in ('rows', 'tiled'):  # both kernel sets behind the custom op
            op = lambda s, g, *w: focal_context_triton(s, g, list(w), 0.5, kernels)  # noqa: E731
            for reentrant in (False, True):
                for t in leaves:
                    t.grad = None
                (cp.checkpoint(op, *leaves, use_reentrant=reentrant) * probe).sum().backward()
                results[f'op {kernels} reentrant={reentrant}'] = worst([t.grad for t in leaves],
                                                                       want)

    def part_dino(results):  # changes focal_context's table and function: runs last
        # a DINO config's backbone, impl as the config leaves it (auto), with the CUDA rows of the
        # auto table applied to this CPU: what a GPU run of the config trains with
        cfg = Config.fromfile('configs/det/dino_focalnet_l_fl3_4scale_12e.py').model.backbone
        cfg.pop('type'), cfg.pop('init_cfg', None), cfg.pop('_delete_', None)
        assert cfg.get('impl') is None and cfg.with_cp is True, cfg
        cfg.update(embed_dim=8, depths=(1, 1), out_indices=(0, 1), drop_path_rate=0.0,
                   focal_levels=cfg.focal_levels[:2], focal_windows=cfg.focal_windows[:2])
        focal_context.AUTO_TABLE = tuple(
            focal_context.AutoRule('cpu', r.training, r.dtypes, r.impl, r.basis, 0, r.max_kernel)
            for r in focal_context.AUTO_TABLE if r.device == 'cuda')
        dino = FocalNet(**cfg)
        dino_ref = FocalNet(**dict(cfg, impl='reference', with_cp=False))
        dino_ref.load_state_dict(dino.state_dict())
        xd = torch.randn(1, 3, 8, 12)  # stage maps 2x3 and 1x2: the interpreter's time is per row
        with torch.no_grad():
            proj_d = [torch.randn_like(o) for o in dino_ref(xd)]
        ran = []
        real = focal_context._aggregate_triton
        focal_context._aggregate_triton = lambda *a: ran.append(1) or real(*a)
        results['dino default impl with_cp'] = worst(run(dino, xd, proj_d, True),
                                                     run(dino_ref, xd, proj_d, True))
        results['dino ran triton'] = float(len(ran))

    def part_compile(results):
        # torch.compile(fullgraph=True): the custom op is one opaque node, no graph break, with
        # and without checkpointing (active in training only: the mode compiled here, forward
        # and backward). With checkpointing (triton x with_cp is where a GPU run found a bug), a
        # second size recompiles with dynamic shapes (the op's fake kernel, which checkpointing
        # leaves as it is).
        # Stage maps 3x4 then 4x3 (2x2 in stage 1): a block, the downsample and a second stage,
        # as at any size. Picks logged by a part before are forgotten: the trace meets a
        # process's first log call, where logging breaks the graph
        focal_context._logged.clear()
        for with_cp, sizes in ((False, ((12, 16), )), (True, ((12, 16), (16, 12)))):
            model = FocalNet('tiny_lrf', impl='triton', with_cp=with_cp, **small)
            model.load_state_dict(ref.state_dict())
            torch._dynamo.reset()
            compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
            for size in sizes:
                xs = torch.randn(1, 3, *size)
                with torch.no_grad():
                    proj = [torch.randn_like(o) for o in ref.eval()(xs)]
                results[f'compiled cp={with_cp} size={size}'] = worst(
                    run(compiled, xs, proj, True), run(ref, xs, proj, True))

    # each part's results, or its error (the test of that part fails with it)
    for part in sys.argv[1:]:
        results[part] = {}
        try:
            globals()['part_' + part](results[part])
        except Exception:
            results[part] = {'error': traceback.format_exc()[-3000:]}
    print('RESULTS', json.dumps(results))
''')


@pytest.fixture(scope='session')
def triton_matrix(tmp_path_factory):
    """Each part's results (or its error), all three in one interpreter process that imports the
    stack once, run once per test run whatever the pytest-xdist workers (conftest.build_once)."""
    def build(folder):
        stdout = run_triton_script(_TRITON_MATRIX, 'compile', 'eager', 'dino', timeout=1750)
        return json.loads(stdout.split('RESULTS', 1)[1])
    return build_once(tmp_path_factory, 'triton_impl_matrix', build)


def _part(triton_matrix, part):
    results = dict(triton_matrix[part])
    assert 'error' not in results, results['error']
    return results


@pytest.mark.slow  # the interpreter: ~12 s even at this size
@pytest.mark.skipif(not triton_available(), reason='triton is not installed')
@pytest.mark.timeout(1800)
def test_dino_default_trains_on_triton_with_checkpointing_and_matches_reference(triton_matrix):
    """What a GPU run of a DINO config trains with (auto -> triton, with_cp): triton under
    non-reentrant checkpointing recomputes each block, so it must not read its saved tensors
    twice."""
    results = _part(triton_matrix, 'dino')
    # each of the 2 blocks ran triton twice: the forward, and its recomputation by with_cp
    assert results.pop('dino ran triton') == 4.0
    assert list(results) == ['dino default impl with_cp'], results
    assert results['dino default impl with_cp'] < 1e-5, results


@pytest.mark.slow
@pytest.mark.skipif(not triton_available(), reason='triton is not installed')
@pytest.mark.timeout(1800)
def test_triton_with_and_without_checkpointing_matches_reference(triton_matrix):
    """The backbone with and without with_cp, and the op (both kernel sets) under reentrant and
    non-reentrant checkpointing."""
    results = _part(triton_matrix, 'eager')
    assert len(results) == 6, results
    for name, worst in results.items():
        assert worst < 1e-5, (name, results)


@pytest.mark.slow
@pytest.mark.skipif(not triton_available(), reason='triton is not installed')
@pytest.mark.timeout(1800)
def test_triton_compiles_fullgraph_with_and_without_checkpointing_and_matches_reference(triton_matrix):
    results = _part(triton_matrix, 'compile')
    assert len(results) == 3, results
    for name, worst in results.items():
        assert worst < 1e-5, (name, results)
