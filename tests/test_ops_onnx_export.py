"""The FocalNet backbone exports to ONNX (CPU, tiny input) and ONNX Runtime reproduces torch."""
import pytest
import torch

from focalnet_mm.models import FocalNet, set_focal_impl

onnx = pytest.importorskip('onnx')


@pytest.mark.parametrize('impl', ['reference', 'fast'])
def test_backbone_exports_to_onnx(tmp_path, impl):
    torch.manual_seed(0)
    model = set_focal_impl(FocalNet('tiny_lrf', embed_dim=16, depths=(1, 1, 1, 1),
                                    focal_windows=3, out_indices=(1, 3)).eval(), impl)
    x = torch.randn(1, 3, 64, 96)
    path = tmp_path / 'focalnet.onnx'
    # the TorchScript exporter: the dynamo exporter needs onnxscript, not installed here
    torch.onnx.export(model, (x, ), str(path), dynamo=False, opset_version=17,
                      input_names=['image'], output_names=['stage1', 'stage3'])
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    ops = {node.op_type for node in graph.graph.node}
    assert 'Conv' in ops and 'LayerNormalization' in ops
    assert [o.name for o in graph.graph.output] == ['stage1', 'stage3']
    dims = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.graph.output]
    assert dims == [[1, 32, 8, 12], [1, 128, 2, 3]]

    ort = pytest.importorskip('onnxruntime')
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    got = session.run(None, {'image': x.numpy()})
    with torch.no_grad():
        expected = model(x)
    for g, e in zip(got, expected):
        assert torch.allclose(torch.from_numpy(g), e, rtol=1e-4, atol=1e-4)
