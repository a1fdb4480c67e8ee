"""Deployment (tools/deploy.py, MMDeploy + ONNX Runtime on CPU): the exported model gives the
PyTorch model's results, through the same tools/test.py and tools/infer.py."""
import contextlib
import json
import os
import os.path as osp
import pickle
import warnings

import numpy as np
import pytest
import torch

from focalnet_mm.deploy import match_detections

from conftest import CLS_T_SHALLOW_ARGS, REPO_ROOT, load_tool

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
def test_maskrcnn_onnx_gives_pytorch_boxes_masks_and_map(tmp_path, coco_mini, maskrcnn_coco_mini_run):
    # FocalNet-T Mask R-CNN, 320 px, 80 classes, trained 2 iterations (conftest: once per run)
    config = maskrcnn_coco_mini_run['config']
    checkpoint = osp.join(maskrcnn_coco_mini_run['work_dir'], 'iter_2.pth')
    work_dir = str(tmp_path / 'work')  # this test's tools/test.py runs write here

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

    # tools/infer.py --onnx: the same painted image and JSON as with --weights. The JSON holds
    # every detection whatever the threshold; the threshold (PyTorch's 5th best score on this
    # image) paints about 5 of them, not the 100 of this barely trained model (painting is per mask)
    image = osp.join(coco_mini, 'images', sorted(p['file_name'] for p in json.load(
        open(osp.join(coco_mini, 'annotations.json')))['images'])[0])
    first = [e for e, r in zip(expected, got) if osp.basename(r['img_path']) == osp.basename(image)]
    threshold = sorted(first[0]['pred_instances']['scores'].tolist())[-5] - 1e-6
    preds = {}
    for name, flag in (('torch', ['--weights', checkpoint]), ('onnx', ['--onnx', onnx_file])):
        out_dir = str(tmp_path / f'infer_{name}')
        preds[name] = infer_tool.main([image, config, *flag, '--out-dir', out_dir, '--device', 'cpu',
                                       '--pred-score-thr', str(threshold)])[0]
        assert osp.isfile(osp.join(out_dir, 'vis', osp.basename(image)))
    pairs = match_detections(*[[torch.tensor(p[k]) for k in ('bboxes', 'scores', 'labels')]
                               for p in (preds['torch'], preds['onnx'])])
    assert len(pairs) == 10 and max(r for _, _, r in pairs) < 1e-3


@pytest.mark.slow
def test_upernet_onnx_gives_pytorch_miou(tmp_path, upernet_camvid_run):
    # the tiny UPerNet FocalNet trained 8 iterations on camvid_mini (conftest: once per run)
    config = upernet_camvid_run['config']
    checkpoint = osp.join(upernet_camvid_run['work_dir'], 'iter_8.pth')
    work_dir = str(tmp_path / 'work')  # this test's tools/test.py runs write here
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
    from focalnet_mm.config.loading import load_config
    from focalnet_mm.deploy import build_pytorch_model
    model = build_pytorch_model(load_config(config), checkpoint)
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.inference(x, [dict(img_shape=(96, 128), ori_shape=(96, 128))]).argmax(1)
    session = ort.InferenceSession(onnx_file, providers=['CPUExecutionProvider'])
    got = torch.from_numpy(session.run(None, {'input': x.numpy()})[0])[:, 0]
    assert got.shape == expected.shape == (1, 96, 128)
    assert (got == expected).float().mean() > 0.999


@pytest.mark.slow  # exports a UPerNet
def test_segmentor_export_and_checkpoint_paint_their_own_classes(tmp_path, monkeypatch):
    """tools/infer.py paints a segmentor's results with the checkpoint's classes and colours, with
    --weights and with --onnx (mmseg's inferencer would use Cityscapes'), without mmseg's
    random-weights warnings for the export."""
    from focalnet_mm.config.loading import load_config
    from focalnet_mm.deploy import build_pytorch_model
    config = osp.join(REPO_ROOT, 'configs', 'seg', 'demo', 'upernet_focalnet_t_srf_ade_demo.py')
    torch.manual_seed(0)
    model = build_pytorch_model(load_config(config), None)
    model.init_weights()
    classes = tuple(f'class{i}' for i in range(model.decode_head.num_classes))
    palette = [(i, 2 * i % 256, 3 * i % 256) for i in range(len(classes))]
    checkpoint = str(tmp_path / 'seg.pth')
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': dict(classes=classes, palette=palette)}}, checkpoint)
    onnx_file, _ = deploy_tool.main([config, checkpoint, '--out', str(tmp_path / 'deploy')])
    image = str(tmp_path / 'a.jpg')
    from PIL import Image
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(image)
    for flag, model_file in (('--weights', checkpoint), ('--onnx', onnx_file)):
        how = (config, model_file, 'cpu', None) if flag == '--weights' else (config, None, 'cpu', model_file)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            built = infer_tool.build_inferencer(*how)
        meta = built[1].visualizer.dataset_meta
        assert tuple(meta['classes']) == classes and [tuple(c) for c in meta['palette']] == palette
        if flag == '--onnx':
            assert not [w for w in caught if 'randomly initialized' in str(w.message)]
        out_dir = tmp_path / flag.strip('-')
        # the command line builds the same inferencer from the same arguments: the one above
        # (built once: each build loads the model, --onnx opens an ONNX Runtime session)
        asked = []
        with monkeypatch.context() as patched:
            patched.setattr(infer_tool, 'build_inferencer',
                            lambda *args, asked=asked, built=built: asked.append(args) or built)
            infer_tool.main([image, config, flag, model_file, '--device', 'cpu', '--out-dir', str(out_dir)])
        assert asked == [how]
        assert os.listdir(out_dir / 'vis') == ['a.jpg']


def ours_traced(caught):
    """TracerWarnings raised in focalnet_mm's own code (the graph would depend on the traced input)."""
    package = osp.join(REPO_ROOT, 'focalnet_mm')
    return [f'{w.filename}:{w.lineno}' for w in caught
            if issubclass(w.category, torch.jit.TracerWarning) and w.filename.startswith(package)]


@pytest.mark.slow  # an export through the tool (the quick loop exports the backbone: test_ops_onnx_export)
def test_classifier_onnx_logits_match_at_two_sizes(tmp_path, cls_t_checkpoint):
    model, checkpoint = cls_t_checkpoint  # conftest: built once per run
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        onnx_file, _ = deploy_tool.main([CLS_T, checkpoint, '--out', str(tmp_path / 'deploy'), '--dynamic',
                                          *CLS_T_SHALLOW_ARGS])
    assert not ours_traced(caught), ours_traced(caught)
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


@pytest.mark.slow  # a second export: the quick loop exports the dynamic one
def test_static_classifier_export_has_fixed_shape(tmp_path, cls_t_checkpoint):
    _, checkpoint = cls_t_checkpoint
    out = str(tmp_path / 'deploy')
    onnx_file, _ = deploy_tool.main([CLS_T, checkpoint, '--out', out, '--shape', '224', '224',
                                      *CLS_T_SHALLOW_ARGS])
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


# --------------------------------------------------------------------------- our rewriters
# Each of focalnet_mm/deploy/rewriters.py is needed: run eagerly inside MMDeploy's rewriting (what
# the export traces), the model gives mmdet's / torch's result with ours and another without it.
TINY_BACKBONE = dict(init_cfg=None, embed_dim=16, depths=[1, 1, 1, 1], drop_path_rate=0.0)
REWRITTEN = {
    'bbox_head': 'mmdet.models.roi_heads.bbox_heads.bbox_head.BBoxHead.predict_by_feat',
    'rpn_head': 'mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat',
    'two_stage': 'mmdet.models.detectors.two_stage.TwoStageDetector.forward',
    'cascade': 'mmdet.models.roi_heads.cascade_roi_head.CascadeRoIHead.predict_bbox',
    'pool': 'torch.nn.functional.adaptive_avg_pool2d',
}


@contextlib.contextmanager
def rewriting(deploy_cfg, without=None):
    """MMDeploy's rewriting for ONNX Runtime as the export sets it up, with ours registered;
    ``without``: the function whose rewriter of ours is left out (MMDeploy's own applies)."""
    from mmdeploy.codebase import import_codebase
    from mmdeploy.core import FUNCTION_REWRITER, RewriterContext
    from mmdeploy.utils import Codebase

    from focalnet_mm.deploy import register_rewriters, rewriters
    import_codebase(Codebase.MMDET)
    import_codebase(Codebase.MMSEG)
    register_rewriters()
    records = FUNCTION_REWRITER._registry._rewrite_records
    saved = {name: list(found) for name, found in records.items()}
    if without:
        records[without] = [r for r in records[without]
                            if getattr(r['_object'], '__module__', '') != rewriters.__name__]
    context = RewriterContext(cfg=deploy_cfg, backend='onnxruntime', ir='onnx')
    context.enter()
    try:
        with torch.no_grad():
            yield
    finally:
        try:
            context.exit()
        except KeyError:  # MMDeploy pops torch.fx's wrapped functions as a list (a dict in torch 2.x)
            pass
        records.clear()
        records.update(saved)


def tiny_detector(config, **model):
    """``config``'s detector with a tiny backbone, 3 classes and 100 proposals (CPU seconds)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    cfg.merge_from_dict(dict(model=dict(backbone=TINY_BACKBONE, neck=dict(in_channels=[16, 32, 64, 128]),
                                        **model)))
    roi_head = cfg.model.roi_head
    for head in (roi_head.bbox_head if isinstance(roi_head.bbox_head, list) else [roi_head.bbox_head]):
        head.num_classes = 3
    roi_head.mask_head.num_classes = 3
    cfg.model.test_cfg.rpn.update(nms_pre=200, max_per_img=100)
    with DefaultScope.overwrite_default_scope('mmdet'):
        torch.manual_seed(0)
        return cfg, MODELS.build(cfg.model).eval()


def detector_batch(model):
    """Two images of different sizes: each padded inside the batch."""
    from mmdet.structures import DetDataSample
    gen = torch.Generator().manual_seed(0)
    shapes = [(90, 120), (128, 100)]
    samples = [DetDataSample(metainfo=dict(img_shape=s, ori_shape=s, scale_factor=(1., 1.))) for s in shapes]
    images = [torch.randint(0, 256, (3, *s), generator=gen).float() for s in shapes]
    return model.data_preprocessor(dict(inputs=images, data_samples=samples), False)


def differences(expected, dets, labels, top=None):
    """Per image: (unmatched of the ``top`` best (default: all), largest relative box difference
    of the matched)."""
    result = []
    for e, d, label in zip(expected, dets, labels):
        e, keep = e.pred_instances, d[:, 4] > 0
        pairs = match_detections((e.bboxes, e.scores, e.labels), (d[keep, :4], d[keep, 4], label[keep]),
                                 top=top or len(e))
        result.append((sum(j is None for _, j, _ in pairs),
                       max((r for _, j, r in pairs if j is not None), default=0.0)))
    return result


@pytest.fixture(scope='module')
def mask_rcnn():
    from focalnet_mm.deploy import make_deploy_config
    cfg, model = tiny_detector('configs/demo/maskrcnn_focalnet_t_demo.py',
                               test_cfg=dict(rcnn=dict(score_thr=0.0)))
    data = detector_batch(model)
    with torch.no_grad():
        expected = model.predict(data['inputs'], data['data_samples'], rescale=False)
    return make_deploy_config(cfg), model, data, expected


@pytest.mark.slow  # builds a (tiny) Mask R-CNN
@pytest.mark.parametrize('left_out', [None, 'bbox_head', 'rpn_head', 'two_stage'])
def test_mask_rcnn_rewriters_each_needed_for_mmdet_results(mask_rcnn, left_out):
    deploy_cfg, model, data, expected = mask_rcnn
    with rewriting(deploy_cfg, REWRITTEN.get(left_out)):
        dets, labels = model.forward(data['inputs'], data['data_samples'], mode='predict')[:2]
    found = differences(expected, dets, labels)
    if left_out is None:  # ours: mmdet's detections, boxes exact
        assert all(unmatched == 0 and rel < 1e-4 for unmatched, rel in found), found
    else:  # MMDeploy's: other detections or boxes
        assert any(unmatched > 0 or rel > 1e-3 for unmatched, rel in found), found


@pytest.mark.slow  # builds a (tiny) Cascade Mask R-CNN
def test_cascade_rewriter_needed_for_class_specific_stages():
    from focalnet_mm.deploy import make_deploy_config
    # 20 detections an image (the recipe keeps 100): the 10 best are compared, and the mask head
    # of each of the 3 stages runs on every detection kept (most of this test's time at 100)
    cfg, model = tiny_detector('configs/det/cascade_maskrcnn_focalnet_t_lrf_3x.py',
                               test_cfg=dict(rcnn=dict(score_thr=0.0, max_per_img=20)))
    data = detector_batch(model)
    with torch.no_grad():
        expected = model.predict(data['inputs'], data['data_samples'], rescale=False)
    deploy_cfg = make_deploy_config(cfg)
    with rewriting(deploy_cfg):
        dets, labels = model.forward(data['inputs'], data['data_samples'], mode='predict')[:2]
    found = differences(expected, dets, labels, top=10)
    assert all(unmatched == 0 and rel < 1e-4 for unmatched, rel in found), found
    with pytest.raises(AssertionError), rewriting(deploy_cfg, REWRITTEN['cascade']):
        model.forward(data['inputs'], data['data_samples'], mode='predict')  # MMDeploy: class-agnostic only


@pytest.mark.slow  # imports MMDeploy's rewriters (seconds to minutes on a loaded machine)
def test_adaptive_pool_rewriter_exact_where_sizes_do_not_divide():
    import torch.nn.functional as F
    from mmengine.config import Config
    deploy_cfg = Config(dict(onnx_config=dict(type='onnx', dynamic_axes={'input': {2: 'height'}}),
                             backend_config=dict(type='onnxruntime'),
                             codebase_config=dict(type='mmseg', task='Segmentation')))
    x = torch.randn(1, 4, 16, 20, generator=torch.Generator().manual_seed(0))  # 512x640 input, stride 32
    sizes = (1, 2, 3, 6)  # UPerNet's pyramid pooling
    expected = [F.adaptive_avg_pool2d(x, size) for size in sizes]
    # one rewriting for every size: entering and leaving one replaces each rewritten function's
    # references in every loaded module
    with rewriting(deploy_cfg):
        for size, pooled in zip(sizes, expected):
            torch.testing.assert_close(F.adaptive_avg_pool2d(x, size), pooled)
    with rewriting(deploy_cfg, REWRITTEN['pool']):  # MMDeploy's: avg_pool2d, kernel 16 // 6
        assert F.adaptive_avg_pool2d(x, 6).shape != expected[-1].shape
