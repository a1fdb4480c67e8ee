"""tools/analysis_tools/gpu_check.sh and its context-chain benchmark, on CPU at tiny sizes.

The whole script with ``--device cpu`` takes about 2 minutes (docs/benchmarks.md); here: its
syntax and argument check, and the Python step it adds (benchmark_focal_context.py) end to end.
"""
import json
import os
import os.path as osp
import subprocess

import pytest

from conftest import load_tool


@pytest.fixture
def chain():
    return load_tool('tools/analysis_tools/benchmark_focal_context.py')


def test_context_chain_rows_time_forward_and_backward_apart(chain, tmp_path, capsys):
    out = tmp_path / 'chain.json'
    rows = chain.main(['--device', 'cpu', '--shapes', '1x8x6x7', '--kernels', '3', '5',
                       '--precisions', 'fp32', 'bf16', '--repeats', '1', '--iters', '1',
                       '--warmup', '1', '--out', str(out)])
    assert [(r['precision'], r['impl']) for r in rows] == [
        ('fp32', 'reference'), ('fp32', 'fast'), ('bf16', 'reference'), ('bf16', 'fast')]
    for r in rows:
        assert r['error'] is None, r
        assert r['fwd_ms'] > 0 and r['fwd_bwd_ms'] > 0  # timed, not asserted: noisy here
        assert r['fwd_bwd_ms'] == pytest.approx(r['fwd_ms'] + r['bwd_all_ms'])
        assert r['wgrad_ms'] == pytest.approx(r['bwd_all_ms'] - r['bwd_input_ms'])
        assert r['conv_backend'] and not r['conv_backend'].startswith('n/a'), r
    saved = json.loads(out.read_text())
    assert saved['results'] == rows and saved['env']['device'] == 'cpu'
    assert '| 1x8x6x7 | bf16 | fast |' in capsys.readouterr().out


def test_context_chain_defaults_are_the_mask_rcnn_stages_and_bad_input_names_the_fix(chain, capsys):
    args = chain.parse_args(['--device', 'cpu'])
    assert args.shapes == [(2, 96, 200, 336), (2, 192, 100, 168), (2, 384, 50, 84),
                           (2, 768, 25, 42)]
    assert args.kernels == [9, 11, 13] and args.impls == ['reference', 'fast']
    for bad, hint in ((['--impls', 'triton'], '--device cuda'), (['--precisions', 'tf32'], 'fp32'),
                      (['--kernels', '4'], 'odd'), (['--shapes', '2x96x200'], 'BxCxHxW')):
        with pytest.raises(SystemExit):
            chain.parse_args(['--device', 'cpu'] + bad)
        assert hint in capsys.readouterr().err


def test_gpu_check_script_parses_and_rejects_a_bad_device(repo_root, tmp_path):
    script = osp.join(repo_root, 'tools', 'analysis_tools', 'gpu_check.sh')
    assert subprocess.run(['bash', '-n', script]).returncode == 0
    proc = subprocess.run(['bash', script, str(tmp_path / 'out'), '--device', 'tpu'],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and 'use cuda or cpu' in proc.stderr
    lines = open(script).read().splitlines()
    # every step goes through run NAME LIMIT ... (timeout); steps a-e on both devices
    steps = [ln.strip() for ln in lines if ln.strip().startswith('run "(')]
    assert len(steps) == 13 and all(s.split('"')[2].split()[0].isdigit() for s in steps)
    assert sorted({s[5:7].strip('(') for s in steps}) == ['a', 'b', 'c', 'd', 'e']
    assert any('timeout --kill-after' in ln for ln in lines)
    assert not osp.exists(osp.join(repo_root, 'tools', 'analysis_tools', 'run_gpu_benchmarks.sh'))


@pytest.mark.slow  # the whole script in bash, with its Python environment report
def test_gpu_check_stays_within_its_budget_and_says_what_it_skipped(repo_root, tmp_path):
    """One device call may run 10 minutes: with the budget spent, every step is skipped (logged
    as SKIPPED) instead of running past it, and the script says so in its exit status."""
    script = osp.join(repo_root, 'tools', 'analysis_tools', 'gpu_check.sh')
    out = tmp_path / 'out'
    proc = subprocess.run(['bash', script, str(out), '--device', 'cpu'], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, GPU_CHECK_BUDGET='5'))
    log = (out / 'log.txt').read_text()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    skipped = [ln for ln in log.splitlines() if ln.startswith('== SKIPPED (budget of 5s spent)')]
    assert len(skipped) == 5, log  # the five CPU steps (a)-(e)
    assert 'torch' in (out / 'env.txt').read_text()  # the environment is recorded first

