"""tools/analysis_tools/benchmark_train_step.py: whole-model train steps on synthetic batches."""
import json
import math
import os.path as osp

import pytest

from conftest import REPO_ROOT, load_tool


@pytest.fixture(scope='module')
def bench():
    return load_tool('tools/analysis_tools/benchmark_train_step.py')


@pytest.mark.slow
def test_focalnet_and_swin_mask_rcnn_steps_are_timed(bench, tmp_path):
    """The default pair (ours vs mmdet's own Swin-T config, resolved from mmdet::) trains."""
    from mmengine.registry import DefaultScope
    def current_scope():  # mmengine restores scopes as copies: compare names, not objects
        scope = DefaultScope.get_current_instance()
        return None if scope is None else scope.scope_name

    scope_before = current_scope()
    out = tmp_path / 'steps.json'
    results = bench.main(['--device', 'cpu', '--batch', '1', '--size', '96', '128', '--objects', '3',
                          '--repeats', '2', '--iters', '1', '--warmup', '1', '--out', str(out)])
    assert list(results) == ['maskrcnn_focalnet_t_3x', 'mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco']
    for res in results.values():
        assert len(res['ms']) == 2 and all(ms > 0 for ms in res['ms'])
        # every Mask R-CNN loss was computed on the synthetic boxes and masks
        assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(res['losses'])
        assert all(math.isfinite(v) for v in res['losses'].values())
    assert current_scope() == scope_before  # no scope leaks to the caller
    saved = json.loads(out.read_text())
    assert saved['env']['device'] == 'cpu' and saved['args']['batch'] == 1
    assert 'maskrcnn_focalnet_t_3x' in saved['table']


def test_synthetic_boxes_lie_inside_the_image_with_matching_masks(bench):
    import torch
    batch = bench.synthetic_det_batch(2, 60, 80, 5, 80, torch.Generator().manual_seed(0))
    for image, sample in zip(batch['inputs'], batch['data_samples']):
        assert image.shape == (3, 60, 80)
        boxes = sample.gt_instances.bboxes.tensor
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert boxes[:, [0, 2]].max() <= 80 and boxes[:, [1, 3]].max() <= 60
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        assert sample.gt_instances.masks.areas.tolist() == areas.tolist()


def test_bad_input_is_one_line(bench, tmp_path):
    with pytest.raises(FileNotFoundError, match='not found'):
        bench.config_file(str(tmp_path / 'missing.py'))
    with pytest.raises(SystemExit):
        bench.parse_args(['--device', 'cpu', '--amp'])
    with pytest.raises(ValueError, match='benchmark_backbone.py for classifiers'):
        bench.build(osp.join(REPO_ROOT, 'configs', 'cls', 'focalnet_t_srf_in1k.py'),
                    bench.parse_args(['--device', 'cpu']), None)
