"""The compiled mmcv ops run on CPU and the whole stack imports together."""
import importlib.util
import subprocess
import sys

import pytest
import torch

mmcv_ops = pytest.importorskip('mmcv.ops', reason='mmcv without compiled ops: run bash tools/setup_env.sh')


@pytest.mark.slow  # a fresh interpreter importing the whole stack (the installed set, not our code)
def test_stack_imports_together_in_a_fresh_interpreter(repo_root):
    """The order a user's config meets it (OpenMMLab first, the plugin through custom_imports),
    with the pinned transformers installed: mmpretrain 1.2.0 imports names that transformers 4.52
    removed, and mmdet.models imports mmpretrain."""
    code = ('import mmcv.ops, mmdet.models, mmseg.models, mmpretrain.models, timm, focalnet_mm\n'
            'from mmpretrain.registry import MODELS\n'
            'import sys; print(MODELS.get("ImageClassifier").__name__, "transformers" in sys.modules)')
    proc = subprocess.run([sys.executable, '-c', code], cwd=repo_root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # where transformers is installed, mmengine imports it: the combination was really loaded
    with_transformers = importlib.util.find_spec('transformers') is not None
    assert proc.stdout.split() == ['ImageClassifier', str(with_transformers)]


def test_roi_align_on_cpu_matches_the_analytic_value_and_torchvision():
    # on a ramp f(y, x) = x bilinear sampling is exact, so each bin is the mean x of its samples:
    # box x in [1, 5] (aligned=True shifts by -0.5) -> samples at x = 1, 2 | 3, 4 -> 1.5 | 3.5
    feature = torch.arange(8.).repeat(8, 1)[None, None]  # (1, 1, 8, 8)
    rois = torch.tensor([[0., 1., 1., 5., 5.]])
    roi_align = mmcv_ops.RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    out = roi_align(feature, rois)
    assert out.shape == (1, 1, 2, 2)
    torch.testing.assert_close(out[0, 0], torch.tensor([[1.5, 3.5], [1.5, 3.5]]))

    torchvision_ops = pytest.importorskip('torchvision.ops')
    generator = torch.Generator().manual_seed(0)
    feature = torch.rand(2, 4, 16, 16, generator=generator)
    xy = torch.rand(6, 2, generator=generator) * 8
    wh = torch.rand(6, 2, generator=generator) * 7 + 1
    rois = torch.cat([torch.tensor([0., 0., 1., 1., 0., 1.])[:, None], xy, xy + wh], 1)
    ours = mmcv_ops.RoIAlign((3, 3), 1.0, sampling_ratio=2, aligned=True)(feature, rois)
    reference = torchvision_ops.roi_align(feature, rois, (3, 3), 1.0, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_nms_on_cpu_suppresses_the_overlapping_box():
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])  # IoU(box0, box1) = 81 / 119 = 0.68 > 0.5
    dets, keep = mmcv_ops.nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    torch.testing.assert_close(dets[:, 4], torch.tensor([0.9, 0.7]))
    _, keep = mmcv_ops.nms(boxes, scores, iou_threshold=0.7)  # 0.68 < 0.7: nothing suppressed
    assert keep.tolist() == [0, 1, 2]

    torchvision_ops = pytest.importorskip('torchvision.ops')
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=generator) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(200, 2, generator=generator) * 30], 1)
    scores = torch.rand(200, generator=generator)
    _, keep = mmcv_ops.nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == torchvision_ops.nms(boxes, scores, 0.5).tolist()
