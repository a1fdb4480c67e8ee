"""tools/analysis_tools/benchmark_backbone.py on CPU at tiny sizes: rows, numbers, JSON, table."""
import json
import statistics

import pytest
import torch
import torch.nn.functional as F

from conftest import load_tool


@pytest.fixture(scope='module')
def bench():
    return load_tool('tools/analysis_tools/benchmark_backbone.py')


def test_side_by_side_infer_writes_table_and_json(bench, tmp_path, capsys):
    out = tmp_path / 'bench.json'
    results = bench.main(['--device', 'cpu', '--arch', 'tiny_srf', '--focal-windows', '3',
                          '--embed-dim', '16', '--depths', '1', '1', '1', '1',
                          '--batch', '2', '--size', '32', '32', '--mode', 'infer',
                          '--repeats', '2', '--iters', '1', '--warmup', '1', '--out', str(out)])
    names = [r['model'] for r in results]
    # on CPU the default rows include 'auto' (per-layer choice); on CUDA it would equal 'fast'
    assert names == ['focalnet-mm[reference]', 'focalnet-mm[fast]', 'focalnet-mm[auto]',
                     'timm-focalnet', 'mmdet-swin-t', 'timm-convnext-t']
    for r in results:
        assert r['error'] is None, r
        assert len(r['ms']) == 2 and all(ms > 0 for ms in r['ms'])
        assert r['ms_median'] == statistics.median(r['ms'])
        assert r['img_per_s'] == pytest.approx(2 * 1000 / r['ms_median'])
    # same weights, same function: 'fast' and 'auto' reproduce the outputs of the first row,
    # 'reference'; rows of other models are not compared (other weights)
    assert [r.get('max_abs_diff_vs_first_focalnet') is not None for r in results] == \
        [True, True, True, False, False, False]
    assert results[1]['max_abs_diff_vs_first_focalnet'] < 1e-4
    assert results[2]['max_abs_diff_vs_first_focalnet'] < 1e-4
    saved = json.loads(out.read_text())
    assert saved['env']['torch'] == torch.__version__
    assert [r['model'] for r in saved['results']] == names
    printed = capsys.readouterr().out
    assert '| focalnet-mm[fast] | infer | fp32 | off |' in printed
    assert '| mmdet-swin-t | infer | fp32 | off |' in printed


def test_train_mode_times_forward_and_backward(bench, tmp_path):
    results = bench.main(['--device', 'cpu', '--models', 'focalnet', '--impls', 'fast',
                          '--arch', 'tiny_srf', '--focal-windows', '3', '--batch', '1',
                          '--embed-dim', '16', '--depths', '1', '1', '1', '1',
                          '--size', '32', '32', '--mode', 'train', '--dtype', 'fp32', 'bf16',
                          '--repeats', '1', '--iters', '1', '--warmup', '1',
                          '--out', str(tmp_path / 'train.json')])
    assert [(r['mode'], r['dtype']) for r in results] == [('train', 'fp32'), ('train', 'bf16')]
    assert all(r['error'] is None and r['ms_median'] > 0 for r in results)


def test_timm_row_runs_our_weights(bench):
    args = bench.parse_args(['--device', 'cpu', '--arch', 'tiny_lrf', '--focal-windows', '5',
                             '--embed-dim', '16', '--depths', '1', '2', '1', '1'])
    torch.manual_seed(0)
    ours = bench.build_ours(args).eval()
    theirs = bench.build_timm_focalnet(args, ours).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = ours(x)  # norm{i} are fresh LayerNorms (weight 1, bias 0)
        got = theirs(x)
    assert len(got) == len(expected) == 4
    for g, e in zip(got, expected):
        g = F.layer_norm(g.permute(0, 2, 3, 1), g.shape[1:2]).permute(0, 3, 1, 2)
        assert torch.allclose(g, e, atol=1e-4), (g - e).abs().max()


def test_bad_arguments_name_the_fix(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(['--device', 'cpu', '--impls', 'triton'])
    assert '--device cuda' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(['--device', 'cpu', '--repeats', '0'])
