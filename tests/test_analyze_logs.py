"""tools/analysis_tools/analyze_logs.py (curves as PNG, train time) and the README main job
(tools/run_demo.py), which draws its training curves with it."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, load_tool

analyze_logs = load_tool('tools/analysis_tools/analyze_logs.py')


def write_run(work_dir, timestamp, records):
    vis = osp.join(work_dir, timestamp, 'vis_data')
    os.makedirs(vis)
    path = osp.join(vis, 'scalars.json')
    with open(path, 'w') as f:
        f.write('\n'.join(json.dumps(r) for r in records) + '\n')
    return path


def epoch_based_records():
    """2 epochs of 3 logged windows each (what mmengine writes), evaluated after each epoch."""
    records = []
    for epoch, times in ((1, [1.0, 0.5, 0.5]), (2, [0.9, 0.7, 0.7])):
        for k, t in enumerate(times):
            it = (epoch - 1) * 30 + 10 * (k + 1)
            records.append(dict(lr=1e-4, loss=3.0 - it / 30, loss_cls=1.0, time=t, data_time=0.01,
                                epoch=epoch, iter=it, step=it))
        records.append({'coco/bbox_mAP': 0.1 * epoch, 'coco/segm_mAP': 0.05 * epoch,
                        'data_time': 0.01, 'time': 0.2, 'step': epoch})
    return records


def test_keys_and_evaluation_points_of_an_epoch_based_run(tmp_path):
    train, val = analyze_logs.load_log(write_run(tmp_path, '20260101_000000', epoch_based_records()))
    assert len(train) == 6 and len(val) == 2
    # default: the loss and every validation metric, never the bookkeeping entries
    assert analyze_logs.default_keys(train, val) == ['loss', 'coco/bbox_mAP', 'coco/segm_mAP']
    x, y = analyze_logs.curve(train, val, 'coco/bbox_mAP')
    assert x.tolist() == [30, 60] and y.tolist() == pytest.approx([0.1, 0.2])  # epoch ends
    x, y = analyze_logs.curve(train, val, 'loss')
    assert x.tolist() == [10, 20, 30, 40, 50, 60] and y[0] == pytest.approx(3.0 - 1 / 3)


def test_iteration_based_run_places_metrics_at_their_iteration(tmp_path):
    records = [dict(loss=1.0, lr=1e-3, time=0.1, iter=i, step=i) for i in (50, 100, 150, 200)]
    records += [dict(mIoU=20.0, aAcc=70.0, step=100), dict(mIoU=25.0, aAcc=75.0, step=200)]
    train, val = analyze_logs.load_log(write_run(tmp_path, '20260101_000000', records))
    assert analyze_logs.curve(train, val, 'mIoU')[0].tolist() == [100, 200]
    assert analyze_logs.default_keys(train, val) == ['loss', 'aAcc', 'mIoU']


def test_plot_curve_writes_a_png_per_key_panel_and_picks_the_training_run(tmp_path):
    write_run(tmp_path, '20260101_000000', epoch_based_records())
    # a later tools/test.py run in the same work dir has no training records: not the one to plot
    write_run(tmp_path, '20260102_000000', [{'coco/bbox_mAP': 0.3, 'time': 0.1, 'step': 0}])
    out = str(tmp_path / 'curves.png')
    keys = analyze_logs.plot_curve([str(tmp_path)], None, None, 'demo', out, dpi=50)
    assert keys == ['loss', 'coco/bbox_mAP', 'coco/segm_mAP']
    image = np.asarray(Image.open(out).convert('L'))
    assert image.shape == (round(2.8 * 3 * 50), 8 * 50)  # 3 panels of 8 x 2.8 inches
    assert image.std() > 5  # lines and labels, not a blank canvas


def test_two_logs_in_one_figure_with_legend(tmp_path):
    a = write_run(tmp_path / 'a', '20260101_000000', epoch_based_records())
    b = write_run(tmp_path / 'b', '20260101_000000', epoch_based_records())
    out = str(tmp_path / 'compare.png')
    assert analyze_logs.main(['plot_curve', a, b, '--keys', 'loss_cls', '--legend', 'T', 'S',
                              '--out', out]) == out
    assert osp.getsize(out) > 1000


def test_errors_name_the_fix(tmp_path):
    log = write_run(tmp_path, '20260101_000000', epoch_based_records())
    with pytest.raises(analyze_logs.LogError, match="no log has the key 'mAP'; available: .*coco/bbox_mAP"):
        analyze_logs.plot_curve([log], ['mAP'], None, None, str(tmp_path / 'x.png'))
    with pytest.raises(analyze_logs.LogError, match='one name per log'):
        analyze_logs.plot_curve([log], ['loss'], ['a', 'b'], None, str(tmp_path / 'x.png'))
    text_log = tmp_path / 'run.log'
    text_log.write_text('11/23 13:03:09 - mmengine - INFO - Epoch(train) [1][10/100] loss: 4.2\n')
    with pytest.raises(analyze_logs.LogError, match='not JSON.*vis_data/scalars.json'):
        analyze_logs.load_log(str(text_log))
    with pytest.raises(analyze_logs.LogError, match='no training run under'):
        analyze_logs.find_scalars(str(tmp_path / '20260101_000000'))
    with pytest.raises(SystemExit, match='^error: .* does not exist'):
        analyze_logs.main(['cal_train_time', str(tmp_path / 'missing')])


def test_cal_train_time_drops_each_epochs_first_window(tmp_path):
    log = write_run(tmp_path, '20260101_000000', epoch_based_records())
    stats = analyze_logs.train_time(log)
    assert stats['fastest_epoch'] == 1 and stats['fastest'] == pytest.approx(0.5)
    assert stats['slowest_epoch'] == 2 and stats['slowest'] == pytest.approx(0.7)
    assert stats['average'] == pytest.approx(0.6) and stats['std'] == pytest.approx(0.1)
    with_outliers = analyze_logs.train_time(log, include_outliers=True)
    assert with_outliers['fastest'] == pytest.approx(2.0 / 3)


@pytest.mark.slow
def test_readme_main_job_trains_evaluates_and_draws_curves(tmp_path):
    """tools/run_demo.py, shortened: data, training, COCO mAP, phase times, curves. 4 training
    images at the demo's batch of 2 make an epoch of 2 iterations: shorter than the logging
    interval (10), so mmengine logs the epoch's last iteration, which the curves draw; 4
    validation images fill predictions.png."""
    work_dir = tmp_path / 'work'
    proc = subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools', 'run_demo.py'), '--work-dir', str(work_dir),
         '--data-root', str(tmp_path / 'data'), '--num-train', '4', '--num-val', '4',
         '--epochs', '1', '--threads', '1'],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert '[1/3] generating the demo data set' in proc.stdout
    for line in ('box  mAP', 'mask mAP', 'by epoch:', 'checkpoint   :', 'curves       :'):
        assert line in proc.stdout
    assert re.search(r'training loss \(mean per epoch\): \d+\.\d\d\n', proc.stdout)
    # how long each phase took
    assert re.search(r'data \d+s \| build \d+s \| training \d+s \| validation \d+s \| curves \d+s',
                     proc.stdout)
    assert (work_dir / 'epoch_1.pth').is_file()
    # validation images: true (left) and predicted (right) boxes/masks, one image per row
    assert f'predictions  : {work_dir / "predictions.png"} (4 validation images' in proc.stdout
    picture = np.asarray(Image.open(work_dir / 'predictions.png').convert('RGB'))
    # the 4 validation images (their sizes vary): the panels are padded to the widest
    sizes = [Image.open(path).size for path in (tmp_path / 'data' / 'val').iterdir()]
    assert len(sizes) == 4
    # two columns (ground truth, prediction) with stack_labelled_columns' 4-pixel gap between them
    assert picture.shape[1] == 2 * max(w for w, _ in sizes) + 4
    assert picture.shape[0] >= sum(h for _, h in sizes) and picture.std() > 5
    assert 'requires_grad' not in proc.stderr  # no warning of the demo's own
    curves = np.asarray(Image.open(work_dir / 'curves.png').convert('L'))  # loss, loss_mask, lr, 2 mAP
    assert curves.shape == (round(2.8 * 5 * 120), 8 * 120) and curves.std() > 5
