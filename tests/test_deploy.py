"""Deployment (tools/deploy.py, MMDeploy + ONNX Runtime on CPU): the exported model gives the
PyTorch model's results, through the same tools/test.py and tools/infer.py."""
import json
import os.path as osp
import pickle

import numpy as np
import pytest
import torch

from focalnet_mm.deploy import match_detections

from conftest import REPO_ROOT, load_tool

pytest.importorskip('mmdeploy')
ort = pytest.importorskip('onnxruntime')

deploy_tool, test_tool = load_tool('tools/deploy.py'), load_tool('tools/test.py')
infer_tool = load_tool('tools/infer.py')
CLS_T = osp.join(REPO_ROOT, 'configs', 'cls', 'focalnet_t_srf_in1k.py')


def load_pickle(path):
    with open(path, 'rb') as f:
        return pickle.load(f)


def mask_iou(a, b):
    from pycocotools import mask as mask_utils
    return float(mask_utils.iou([a], [b], [0])[0][0])


@pytest.mark.slow
def test_maskrcnn_onnx_gives_pytorch_boxes_masks_and_map(tmp_path, coco_mini):
    from test_det_e2e import write_coco_mini_config
    torch.manual_seed(0)
    config = write_coco_mini_config(tmp_path, coco_mini)  # FocalNet-T Mask R-CNN, 320 px, 80 classes
    work_dir = str(tmp_path / 'work')
    load_tool('tools/train.py').main([config, '--work-dir', work_dir])  # 2 iterations
    checkpoint = osp.join(work_dir, 'iter_2.pth')

    out = str(tmp_path / 'deploy')
    onnx_file, check = deploy_tool.main([config, checkpoint, '--out', out, '--verify'])  # dynamic
    assert sorted(p for p in ('end2end.onnx', 'deploy_cfg.py', 'model_cfg.py', 'dataset_meta.json')
                  if osp.isfile(osp.join(out, p))) == ['dataset_meta.json', 'deploy_cfg.py',
                                                       'end2end.onnx', 'model_cfg.py']
    import onnx
    ops = {node.op_type for node in onnx.load(onnx_file, load_external_data=False).graph.node}
    assert {'NonMaxSuppression', 'RoiAlign'} <= ops  # standard ops: no custom-op library needed
    assert check['top'] == 10 and check['unmatched'] == 0
    assert check['box_rel_diff'] < 1e-3 and check['mask_iou_min'] >= 0.99

    # tools/test.py on the 6 images (batches of 2, padded, each its own size): PyTorch and ONNX
    metrics, dumps = {}, {}
    for name, model in (('torch', checkpoint), ('onnx', onnx_file)):
        dumps[name] = str(tmp_path / f'{name}.pkl')
        metrics[name] = test_tool.main([config, model, '--work-dir', work_dir, '--out', dumps[name]])
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'):
        assert metrics['onnx'][key] == pytest.approx(metrics['torch'][key], abs=1e-3), key
    expected, got = load_pickle(dumps['torch']), load_pickle(dumps['onnx'])
    assert [r['img_id'] for r in got] == [r['img_id'] for r in expected] and len(got) == 6
    compared = 0
    for e, g in zip(expected, got):
        e, g = e['pred_instances'], g['pred_instances']
        # each of the 10 best: the same label and score (ties may swap places), box within 1e-3
        pairs = match_detections(*[(d['bboxes'], d['scores'], d['labels']) for d in (e, g)])
        assert len(pairs) == min(10, len(e['scores'])) and all(j is not None for _, j, _ in pairs)
        assert max(r for _, _, r in pairs) < 1e-3
        assert min(mask_iou(e['masks'][i], g['masks'][j]) for i, j, _ in pairs) >= 0.99
        compared += len(pairs)
    assert compared >= 50

    # tools/infer.py --onnx: the same painted image and JSON as with --weights
    image = osp.join(coco_mini, 'images', sorted(p['file_name'] for p in json.load(
        open(osp.join(coco_mini, 'annotations.json')))['images'])[0])
    preds = {}
    for name, flag in (('torch', ['--weights', checkpoint]), ('onnx', ['--onnx', onnx_file])):
        out_dir = str(tmp_path / f'infer_{name}')
        preds[name] = infer_tool.main([image, config, *flag, '--out-dir', out_dir, '--device', 'cpu',
                                       '--pred-score-thr', '0'])[0]
        assert osp.isfile(osp.join(out_dir, 'vis', osp.basename(image)))
    pairs = match_detections(*[[torch.tensor(p[k]) for k in ('bboxes', 'scores', 'labels')]
                               for p in (preds['torch'], preds['onnx'])])
    assert len(pairs) == 10 and max(r for _, _, r in pairs) < 1e-3


@pytest.mark.slow
def test_upernet_onnx_gives_pytorch_miou(tmp_path, camvid_mini):
    from test_seg_train import camvid_config, layout_camvid
    classes = layout_camvid(camvid_mini, tmp_path / 'camvid')
    config = camvid_config(tmp_path, tmp_path / 'camvid', classes)  # tiny UPerNet FocalNet
    work_dir = str(tmp_path / 'work')
    load_tool('tools/train.py').main([config, '--work-dir', work_dir, '--cfg-options',
                                      'train_cfg.max_iters=4', 'default_hooks.checkpoint.interval=4'])
    checkpoint = osp.join(work_dir, 'iter_4.pth')
    onnx_file, check = deploy_tool.main([config, checkpoint, '--out', str(tmp_path / 'deploy'),
                                         '--verify'])
    assert check['pixel_agreement'] > 0.999
    metrics, dumps = {}, {}
    for name, model in (('torch', checkpoint), ('onnx', onnx_file)):
        dumps[name] = str(tmp_path / f'{name}.pkl')
        metrics[name] = test_tool.main([config, model, '--work-dir', work_dir, '--out', dumps[name],
                                        '--cfg-options', f'visualizer.name=deploy_seg_{name}'])
    assert metrics['onnx']['mIoU'] == pytest.approx(metrics['torch']['mIoU'], abs=0.01)
    assert metrics['onnx']['aAcc'] == pytest.approx(metrics['torch']['aAcc'], abs=0.01)
    for e, g in zip(load_pickle(dumps['torch']), load_pickle(dumps['onnx'])):
        assert g['pred_sem_seg']['data'].shape == e['pred_sem_seg']['data'].shape == (1, 180, 240)
        assert (g['pred_sem_seg']['data'] == e['pred_sem_seg']['data']).float().mean() > 0.999

    # the same graph at another size (pyramid pooling over 3x4 features: sizes that do not divide)
    from focalnet_mm.cli import load_config
    from focalnet_mm.deploy import build_pytorch_model
    model = build_pytorch_model(load_config(config), checkpoint)
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.inference(x, [dict(img_shape=(96, 128), ori_shape=(96, 128))]).argmax(1)
    session = ort.InferenceSession(onnx_file, providers=['CPUExecutionProvider'])
    got = torch.from_numpy(session.run(None, {'input': x.numpy()})[0])[:, 0]
    assert got.shape == expected.shape == (1, 96, 128)
    assert (got == expected).float().mean() > 0.999


def test_classifier_onnx_logits_match_at_two_sizes(tmp_path, cls_t_checkpoint):
    model, checkpoint = cls_t_checkpoint  # conftest: built once per run
    onnx_file, _ = deploy_tool.main([CLS_T, checkpoint, '--out', str(tmp_path / 'deploy'), '--dynamic'])
    session = ort.InferenceSession(onnx_file, providers=['CPUExecutionProvider'])
    assert [d for d in session.get_inputs()[0].shape] == ['batch', 3, 'height', 'width']
    gen = torch.Generator().manual_seed(1)
    for shape in ((1, 3, 64, 64), (2, 3, 96, 128)):  # one graph, two sizes (and batch sizes)
        x = torch.randn(shape, generator=gen)
        with torch.no_grad():
            logits = model(x, mode='tensor')
        assert logits.std() > 0.1  # logits that differ between classes
        # MMDeploy's classifier ends in the head's softmax: its log is the logits minus logsumexp
        scores = torch.from_numpy(session.run(None, {'input': x.numpy()})[0])
        assert scores.shape == logits.shape == (shape[0], 1000)
        torch.testing.assert_close(scores.log(), logits.log_softmax(-1), rtol=0, atol=1e-4)
        assert torch.equal(scores.argmax(-1), logits.argmax(-1))


def test_static_classifier_export_has_fixed_shape(tmp_path, cls_t_checkpoint):
    _, checkpoint = cls_t_checkpoint
    out = str(tmp_path / 'deploy')
    onnx_file, _ = deploy_tool.main([CLS_T, checkpoint, '--out', out, '--shape', '224', '224'])
    session = ort.InferenceSession(onnx_file, providers=['CPUExecutionProvider'])
    assert session.get_inputs()[0].shape == [1, 3, 224, 224]
    with pytest.raises(Exception, match='(?i)dimension|shape'):
        session.run(None, {'input': np.zeros((1, 3, 96, 96), np.float32)})
    from mmengine.config import Config
    assert Config.fromfile(osp.join(out, 'deploy_cfg.py')).onnx_config.input_shape == [224, 224]


@pytest.mark.parametrize('config, options, message', [
    ('configs/det/sparsercnn_focalnet_t_lrf_3x.py', [], 'SparseRCNN does not export: MMDeploy'),
    ('configs/seg/upernet_focalnet_t_lrf_512x512_160k_ade20k.py',
     ['--cfg-options', "model.test_cfg.mode=slide"], "mode='slide' does not export"),
    (CLS_T, ['--fp16'], '--fp16 builds a TensorRT engine: add --backend tensorrt'),
    (CLS_T, ['--shape', '64', '64'], "test pipeline crops 224x224; give that size or --dynamic"),
])
def test_what_cannot_export_fails_in_one_line(tmp_path, capsys, config, options, message):
    with pytest.raises(SystemExit) as exit_info:
        deploy_tool.main([osp.join(REPO_ROOT, config), __file__, '--out', str(tmp_path), *options])
    text = str(exit_info.value)
    assert text.startswith('error: ') and message in text and '\n' not in text
    assert not osp.exists(osp.join(tmp_path, 'end2end.onnx'))


def test_tensorrt_without_tensorrt_names_what_to_install(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip('tensorrt is installed here')
    except ImportError:
        pass
    with pytest.raises(SystemExit, match='needs TensorRT: pip install tensorrt'):
        deploy_tool.main([CLS_T, __file__, '--out', str(tmp_path / 'trt'), '--backend', 'tensorrt',
                          '--shape', '64', '64'])
