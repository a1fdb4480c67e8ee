"""The FocalNet backbone exports to ONNX (CPU, tiny input) and ONNX Runtime reproduces torch."""
import pytest
import torch

from focalnet_mm.models import FocalNet, set_focal_impl

onnx = pytest.importorskip('onnx')


@pytest.mark.parametrize('impl', ['reference', 'fast'])
def test_backbone_exports_to_onnx(tmp_path, impl):
    """ONNX Runtime reproduces torch at the traced size and, exported with dynamic axes, at a size
    the traced one says nothing about (not a multiple of the patch size: the graph pads by the
    input's own size, not by the traced one's)."""
    torch.manual_seed(0)
    model = set_focal_impl(FocalNet('tiny_lrf', embed_dim=16, depths=(1, 1, 1, 1),
                                    focal_windows=3, out_indices=(1, 3)).eval(), impl)
    x = torch.randn(1, 3, 64, 96)
    path = tmp_path / 'focalnet.onnx'
    # the TorchScript exporter: the dynamo exporter needs onnxscript, not installed here
    torch.onnx.export(model, (x, ), str(path), dynamo=False, opset_version=17,
                      input_names=['image'], output_names=['stage1', 'stage3'],
                      dynamic_axes={'image': {2: 'height', 3: 'width'}})
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    ops = {node.op_type for node in graph.graph.node}
    assert 'Conv' in ops and 'LayerNormalization' in ops
    assert [o.name for o in graph.graph.output] == ['stage1', 'stage3']

    ort = pytest.importorskip('onnxruntime')
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    for image, shapes in ((x, [(1, 32, 8, 12), (1, 128, 2, 3)]),
                          (torch.randn(1, 3, 70, 90), [(1, 32, 9, 12), (1, 128, 3, 3)])):
        got = session.run(None, {'image': image.numpy()})
        with torch.no_grad():
            expected = model(image)
        assert [g.shape for g in got] == [tuple(e.shape) for e in expected] == shapes
        for g, e in zip(got, expected):
            assert torch.allclose(torch.from_numpy(g), e, rtol=1e-4, atol=1e-4)
