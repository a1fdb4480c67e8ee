"""The tiled Triton chain kernels (focalnet_mm.ops.triton_tiled) against the reference path, on CPU
under the Triton interpreter.

``TRITON_INTERPRET`` must be set before triton itself is imported (triton.language's own jit
helpers are interpreted only then), so the kernels run in one subprocess per group of checks,
which prints its errors as JSON; the tests assert on them. The GPU group runs the same checks
compiled, at a detection-like size, where CUDA is available. The interpreter is slow: shapes are
tiny, the large kernels are marked slow.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from focalnet_mm.ops import triton_available

from conftest import REPO_ROOT as REPO
from conftest import build_once, load_tool, run_triton_script

pytestmark = pytest.mark.skipif(not triton_available(), reason='triton is not installed')
CANDIDATE_NAMES = ['h4w32c32n4-g4x32r64', 'h4w64c32n4-g8x32r64', 'h2w64c32n8-g8x32r64',
                   'h4w64c32n8-g8x32r64']

_CHECKS = textwrap.dedent('''
    import json, sys
    import torch
    from focalnet_mm.ops import triton_tiled as tiled
    from focalnet_mm.ops.focal_context import _aggregate_reference

    def rel(a, b):
        return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()

    device = 'cuda' if sys.argv[1] == 'gpu' else 'cpu'
    torch.backends.cudnn.allow_tf32 = False  # the fp32 reference in fp32 on a GPU too

    def inputs(shape, kernels, dtype=torch.float32, seed=0):
        b, h, w, c = shape
        gen = torch.Generator().manual_seed(seed)
        src = torch.randn(b, h, w, c, generator=gen).to(device, dtype)
        gates = torch.randn(b, h, w, len(kernels) + 1, generator=gen).to(device, dtype)
        weights = [(torch.randn(c, 1, k, k, generator=gen) / k).to(device, dtype)
                   for k in kernels]
        return src, gates, weights, torch.randn(b, h, w, c, generator=gen).to(device, dtype)

    def run(src, gates, weights, probe, scale, config, saved=None, needs_src=True, needs_w=None):
        acc, mean, pres = saved or tiled.chain_forward(src, gates, weights, scale, config)
        assert acc.dtype == src.dtype and mean.dtype == torch.float32 and len(pres) == len(weights)
        g_src, g_gates, g_w = tiled.chain_backward(
            probe, src, gates, mean, weights, pres, scale, needs_src,
            needs_w or [True] * len(weights), config)
        assert g_gates.dtype == gates.dtype and g_gates.shape == gates.shape
        return [acc, g_src, g_gates, *g_w]

    def errors(src, gates, weights, probe, scale, config):
        """max relative error of output, src, gate and every kernel gradient vs fp32 reference."""
        got = run(src, gates, weights, probe, scale, config)
        leaves = [t.float().requires_grad_(True) for t in (src, gates, *weights)]
        ref = scale * _aggregate_reference(leaves[0], leaves[1], leaves[2:], False)
        ref = ref.permute(0, 2, 3, 1)
        ref_grads = torch.autograd.grad((ref * probe.float()).sum(), leaves)
        return [rel(a, b) for a, b in zip(got, [ref.detach(), *ref_grads])], got

    res = {}
    if sys.argv[1] == 'fast':
        # H 5 / tile 4, W 5 / tile 4, C 24 / block 16: a partial tile in every dimension;
        # B*H = 10 rows in weight-gradient groups of 4 (4 + 4 + 2): a partial reduction group
        cfg = tiled.TileConfig(4, 4, 16, 4, 4, 16, wgrad_groups=3)
        case = inputs((2, 5, 5, 24), [3, 5])
        res['fp32'], first = errors(*case, 1 / 3, cfg)
        # forward and backward again (gates and the second kernel only): bitwise the same
        again = run(*case, 1 / 3, cfg, tiled.chain_forward(*case[:3], 1 / 3, cfg),
                    needs_src=False, needs_w=[False, True])
        res['partial_none'] = [again[1] is None, again[3] is None]
        res['deterministic'] = [torch.equal(again[i], first[i]) for i in (0, 2, 4)]
        for name in tiled.CANDIDATES:  # C 36 > 32: two channel blocks; scale 1
            res[name] = errors(*inputs((1, 3, 5, 36), [3, 3], seed=1), 1.0, name)[0]
        for dtype in (torch.float16, torch.bfloat16):  # storage rounding, fp32 math
            res[str(dtype)] = errors(*inputs((2, 3, 4, 12), [3], dtype, seed=2), 0.5,
                                     tiled.TileConfig(2, 4, 8, 4, 4, 8, 4))[0]
        # FocalNet's detection kernels 9/11/13 (halo wider than the map), three levels
        res['large'] = errors(*inputs((1, 7, 8, 20), [9, 11, 13], seed=3), 0.25,
                              tiled.TileConfig(3, 8, 16, 4, 4, 16, 5))[0]
    elif sys.argv[1] == 'gpu':  # every candidate, FocalNet-T's first stage kernels, odd map
        for name in tiled.CANDIDATES:
            for dtype in (torch.float32, torch.bfloat16):
                case = inputs((2, 37, 45, 96), [9, 11, 13], dtype, seed=4)
                errs, first = errors(*case, 0.25, name)
                again = run(*case, 0.25, name)
                res[f'{name} {dtype}'] = [max(errs), all(torch.equal(a, b)
                                                         for a, b in zip(first, again))]
    print('RESULT', json.dumps(res))
''')


def _run_checks(group, timeout):
    """The _CHECKS group's results: under the interpreter, or compiled on CUDA for 'gpu'."""
    stdout = run_triton_script(_CHECKS, group, timeout=timeout, interpret=group != 'gpu')
    return json.loads(stdout.split('RESULT', 1)[1])


@pytest.fixture(scope='session')
def fast_checks(tmp_path_factory):
    """The 'fast' group's results (the large kernels' too: one interpreter process, which
    imports the stack once), run once per test run even when this module's tests land on
    different pytest-xdist workers (conftest.build_once). Whole suite only (a minute of
    interpreter even at these sizes): production runs the row kernels until a GPU measures the
    TILE_TABLE (docs/benchmarks.md), and those stay in the quick loop (test_ops_focal_context,
    test_impl_matrix)."""
    return build_once(tmp_path_factory, 'triton_tiled_fast_checks', lambda folder: _run_checks('fast', 1150))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_fp32_partial_tiles_everywhere_match_reference_deterministically(fast_checks):
    assert max(fast_checks['fp32']) <= 1e-5, fast_checks['fp32']
    # a second forward and backward: output, gate and kernel gradients bitwise the same
    # (fixed-order reductions, no atomics); gradients not asked for are not computed
    assert fast_checks['deterministic'] == [True] * 3
    assert fast_checks['partial_none'] == [True, True]


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize('name', CANDIDATE_NAMES)
def test_every_shipped_candidate_matches_reference(fast_checks, name):
    assert max(fast_checks[name]) <= 1e-5, fast_checks[name]


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize('dtype,tol', [('torch.float16', 1e-2), ('torch.bfloat16', 5e-2)])
def test_low_precision_storage_with_fp32_math(fast_checks, dtype, tol):
    # the tolerances of test_ops_focal_context's interpreter check: a few ulps of the storage
    errs = fast_checks[dtype]
    assert max(errs) < tol and max(errs) > 0, errs  # rounded storage: close, not bit-exact


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_large_kernels_three_levels(fast_checks):
    errs = fast_checks['large']
    assert max(errs) <= 1e-5, errs


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.timeout(400)
def test_gpu_every_candidate_matches_reference_and_is_deterministic():
    results = _run_checks('gpu', 390)  # compiled kernels, no interpreter
    assert len(results) == 2 * len(CANDIDATE_NAMES)
    for key, (err, deterministic) in results.items():
        # the tolerances of test_ops_focal_context's GPU test (fp32 with TF32 off)
        assert err < (1e-4 if 'float32' in key else 5e-2), (key, err)
        assert deterministic, key


def test_tile_table_candidates_and_bad_input():
    from focalnet_mm.ops import triton_tiled as tiled  # compiled kernels are never launched here
    assert list(tiled.CANDIDATES) == CANDIDATE_NAMES
    assert tiled.TILE_TABLE_BASIS.startswith('UNMEASURED')
    assert set(tiled.TILE_TABLE.values()) <= set(tiled.CANDIDATES) | {'rows'}
    assert {(c, k) for c, k, _ in tiled.TILE_TABLE} == {
        (c, k) for c in (96, 192, 384, 768) for k in (9, 11, 13)}
    default = tiled.CANDIDATES[tiled.DEFAULT_CONFIG]
    assert tiled.pick_config(40, 3, torch.float32) == default  # no row: the default
    for cfg in tiled.CANDIDATES.values():
        assert 1 <= cfg.tile_h <= 4  # one hand-written accumulator per row
    gen = torch.Generator().manual_seed(0)
    src, gates = torch.randn(1, 3, 4, 8, generator=gen), torch.randn(1, 3, 4, 2, generator=gen)
    weights = [torch.randn(8, 1, 3, 3, generator=gen)]
    with pytest.raises(ValueError, match='contiguous'):
        tiled.chain_forward(src.transpose(1, 2), gates, weights, 1.0)
    with pytest.raises(ValueError, match='levels'):
        tiled.chain_forward(src, gates[..., :1], weights, 1.0)
    with pytest.raises(ValueError, match='gates.contiguous'):
        tiled.chain_forward(src, gates.transpose(1, 2).contiguous().transpose(1, 2), weights, 1.0)
    with pytest.raises(ValueError, match='K odd'):
        tiled.chain_forward(src, gates, [torch.zeros(8, 1, 2, 2)], 1.0)
    with pytest.raises(ValueError, match='use one of'):
        tiled.chain_forward(src, gates, weights, 1.0, 'h9w9')


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_candidates_benchmark_runs_under_the_interpreter(tmp_path, monkeypatch, capsys):
    out = tmp_path / 'cand.json'
    name = 'h2w64c32n8-g8x32r64'
    env = dict(os.environ, TRITON_INTERPRET='1', OMP_NUM_THREADS='1')
    env.pop('FOCALNET_IMPL', None)
    proc = subprocess.run(
        [sys.executable, 'tools/analysis_tools/benchmark_focal_context.py', '--candidates',
         '--device', 'cpu', '--shapes', '1x8x3x4', '--kernels', '3', '--precisions', 'fp32',
         '--candidate-names', name, '--repeats', '1', '--iters', '1', '--warmup', '0',
         '--out', str(out)], env=env, cwd=REPO, capture_output=True, text=True, timeout=290)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = json.loads(out.read_text())
    rows = {r['candidate'] or r['impl']: r for r in saved['results']}
    assert set(rows) == {name, 'triton', 'reference'}
    assert all(r['error'] is None and r['fwd_bwd_ms'] > 0 for r in rows.values()), rows
    assert rows[name]['max_rel_err'] <= 1e-5
    # the faster of the tile and the row kernels ('rows') wins the table entry
    winner = name if rows[name]['fwd_bwd_ms'] < rows['triton']['fwd_bwd_ms'] else 'rows'
    assert saved['tile_table'] == {'8,3,fp32': winner}
    snippet = (tmp_path / 'cand_tile_table.py').read_text()
    assert f"(8, 3, 'fp32'): '{winner}'," in snippet and 'TILE_TABLE_BASIS' in snippet
    assert "(8, 3, 'fp32')" in proc.stdout  # printed, ready to paste
    # without the interpreter, the CPU path names the fix (its argument check, in this process:
    # the command line ran above)
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    tool = load_tool('tools/analysis_tools/benchmark_focal_context.py', 'benchmark_no_interpreter')
    with pytest.raises(SystemExit) as exit_info:
        tool.main(['--candidates', '--device', 'cpu'])
    assert exit_info.value.code == 2 and 'TRITON_INTERPRET=1' in capsys.readouterr().err
