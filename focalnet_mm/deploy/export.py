"""Deployment: a trained detector, segmentor or classifier -> ``end2end.onnx`` -> ONNX Runtime.

MMDeploy 1.3.1 does the work (its rewriters turn mmdet's post-processing into ONNX ``TopK``,
``NonMaxSuppression`` and ``RoiAlign``; its backend models turn the ONNX outputs back into
DetDataSample / SegDataSample / DataSample). It ships no deploy configs in its wheel, so
:func:`make_deploy_config` writes one from the model config: the post-processing limits that
MMDeploy does not read from ``model.test_cfg`` are set from it, so the export keeps what the
PyTorch model does. :func:`mmdeploy_export_fixes` (compat) makes MMDeploy run with torch >= 2.9.

An export directory holds ``end2end.onnx`` (or ``end2end.engine``), ``deploy_cfg.py`` (the deploy
config used), ``model_cfg.py`` (the model config, with the test pipeline the export expects) and,
when the checkpoint names them, the classes and palette (``dataset_meta.json``).
"""
import copy
import json
import os
import os.path as osp
from typing import Optional, Sequence

from mmengine.config import Config

from ..compat import mmdeploy_export_fixes

BACKENDS = ('onnxruntime', 'tensorrt')
#: what MMDeploy 1.3.1 cannot export, and why (checked before anything is built)
NOT_EXPORTABLE = {
    'SparseRCNN': 'MMDeploy 1.3.1 has no rewriter for its EmbeddingRPNHead / SparseRoIHead (its '
                  'two-stage rewrite hands them boxes, not learned proposal features, and RoIAlign '
                  'fails); export Mask R-CNN, Cascade Mask R-CNN, ATSS or DINO',
}
ONNX_FILE = 'end2end.onnx'
ENGINE_FILE = 'end2end.engine'
META_FILE = 'dataset_meta.json'  # class names / palette of the checkpoint


class DeployError(ValueError):
    """A model or a request that cannot be deployed; the message names the fix."""


def task_of(model_cfg: Config) -> str:
    """MMDeploy's task name for a model config (raises DeployError for what does not export)."""
    scope = model_cfg.get('default_scope')
    model = model_cfg.model
    if model.type in NOT_EXPORTABLE:
        raise DeployError(f'{model.type} does not export: {NOT_EXPORTABLE[model.type]}')
    if scope == 'mmdet':
        return 'ObjectDetection'  # also with masks (MMDeploy has one mmdet task for both)
    if scope == 'mmseg':
        mode = (model.get('test_cfg') or {}).get('mode', 'whole')
        if mode != 'whole':
            raise DeployError(f"model.test_cfg.mode={mode!r} does not export (MMDeploy exports one "
                              "forward pass over the whole image): set model.test_cfg=dict(mode='whole')")
        return 'Segmentation'
    if scope == 'mmpretrain':
        return 'Classification'
    raise DeployError(f'default_scope {scope!r}: only mmdet, mmseg and mmpretrain configs export')


def _post_processing(model_cfg: Config) -> dict:
    """MMDeploy's post-processing limits, taken from the model's own test_cfg where it has them.

    MMDeploy keeps its own values for the candidates before NMS (``pre_top_k``) and the boxes per
    class after it; with the model's larger limits the ONNX graph drops nothing the model keeps.
    """
    test_cfg = model_cfg.model.get('test_cfg') or {}
    stages = [test_cfg.get(k) or {} for k in ('rpn', 'rcnn')] if 'rpn' in test_cfg else [test_cfg]
    final = stages[-1]
    nms = final.get('nms') or {}
    pre = max([s.get('nms_pre', 1000) for s in stages] + [1000])
    keep = max([s.get('max_per_img', 100) for s in stages] + [100])
    return dict(score_threshold=final.get('score_thr', 0.05), confidence_threshold=0.005,
                iou_threshold=nms.get('iou_threshold', 0.5), max_output_boxes_per_class=keep,
                pre_top_k=max(pre, keep), keep_top_k=final.get('max_per_img', 100),
                background_label_id=-1, export_postprocess_mask=False)


def make_deploy_config(model_cfg: Config, backend: str = 'onnxruntime',
                       shape: Optional[Sequence[int]] = None, fp16: bool = False) -> Config:
    """The MMDeploy config for ``model_cfg``: static at ``shape`` = (H, W), else dynamic H, W.

    ``fp16`` builds a half-precision TensorRT engine (ONNX Runtime on CPU runs fp32 only).
    """
    if backend not in BACKENDS:
        raise DeployError(f'--backend {backend!r}: choose one of {", ".join(BACKENDS)}')
    if fp16 and backend != 'tensorrt':
        raise DeployError('--fp16 builds a TensorRT engine: add --backend tensorrt (ONNX Runtime '
                          'on CPU runs the fp32 graph)')
    task = task_of(model_cfg)
    codebase = dict(mmdet='mmdet', mmseg='mmseg', mmpretrain='mmpretrain')[model_cfg.default_scope]
    with_masks = bool((model_cfg.model.get('roi_head') or {}).get('mask_head'))
    outputs = dict(ObjectDetection=['dets', 'labels'] + ['masks'] * with_masks,
                   Segmentation=['output'], Classification=['output'])[task]
    onnx_config = dict(type='onnx', export_params=True, keep_initializers_as_inputs=False,
                       opset_version=11, save_file=ONNX_FILE, input_names=['input'],
                       output_names=outputs, optimize=True,
                       input_shape=None if shape is None else [int(shape[1]), int(shape[0])])
    if shape is None:
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        for name in outputs:
            axes[name] = ({0: 'batch'} if task == 'Classification' else
                          {0: 'batch', 2: 'height', 3: 'width'} if task == 'Segmentation' else
                          {0: 'batch', 1: 'num_dets'})
        onnx_config['dynamic_axes'] = axes
    codebase_config = dict(type=codebase, task=task)
    if codebase == 'mmdet':
        codebase_config.update(model_type='end2end', post_processing=_post_processing(model_cfg))
    elif codebase == 'mmseg':
        codebase_config['with_argmax'] = True
    cfg = dict(onnx_config=onnx_config, codebase_config=codebase_config,
               backend_config=dict(type=backend))
    if backend == 'tensorrt':
        h, w = shape if shape is not None else test_scale(model_cfg)
        dynamic = shape is None
        cfg['backend_config'].update(
            common_config=dict(fp16_mode=fp16, max_workspace_size=1 << 32),
            model_inputs=[dict(input_shapes=dict(input=dict(
                min_shape=[1, 3, 320 if dynamic else h, 320 if dynamic else w], opt_shape=[1, 3, h, w],
                max_shape=[1, 3, max(h, 1344) if dynamic else h, max(w, 1344) if dynamic else w])))])
    return Config(cfg)


def test_scale(model_cfg: Config):
    """(H, W) of the test pipeline's resize or crop (a TensorRT optimisation profile's middle)."""
    for transform in model_cfg.get('test_pipeline', []):
        for key in ('scale', 'crop_size'):
            size = transform.get(key)
            if size:
                size = (size, size) if isinstance(size, int) else size
                return sorted(size)[0], sorted(size)[-1]  # landscape
    return 800, 1333


def static_test_pipeline(model_cfg: Config, shape: Sequence[int]) -> Config:
    """``model_cfg`` with test pipelines that resize to ``shape`` = (H, W), what a static export
    sees (MMDeploy's tools do the same); a classifier's test crop must already be ``shape``."""
    cfg = copy.deepcopy(model_cfg)
    pipelines = [cfg.get('test_pipeline')] + [
        (cfg.get(loader) or {}).get('dataset', {}).get('pipeline') for loader in
        ('test_dataloader', 'val_dataloader')]
    for pipeline in filter(None, pipelines):
        for transform in pipeline:
            crop = transform.get('crop_size')
            if cfg.get('default_scope') == 'mmpretrain' and crop is not None:
                crop = (crop, crop) if isinstance(crop, int) else tuple(crop)[::-1]
                if tuple(shape) != crop:
                    raise DeployError(f'--shape {shape[0]} {shape[1]}: this classifier\'s test '
                                      f'pipeline crops {crop[0]}x{crop[1]}; give that size or --dynamic')
            elif transform.get('type') == 'Resize':
                transform.update(scale=(int(shape[1]), int(shape[0])), keep_ratio=False)
    return cfg


_registered = False


def register_rewriters() -> None:
    """Our MMDeploy rewriters for ONNX Runtime (once per process), for class-specific boxes.

    MMDeploy's default ``BBoxHead.predict_by_feat`` keeps, for class-specific box regression
    (Mask R-CNN), only the box of each RoI's best class, so a detection of another class sits on
    the wrong box. Ours does what mmdet's ``multiclass_nms`` does: every (RoI, class) pair above
    ``score_thr`` with its own box, NMS per class (mmdet's coordinate offsets, ONNX
    ``NonMaxSuppression``), the best ``max_per_img`` kept. MMDeploy's ``CascadeRoIHead.predict_bbox``
    refuses class-specific intermediate stages (FocalNet's Cascade Mask R-CNN has them); ours
    refines each RoI with its best class's box, as mmdet's ``_refine_roi`` does. MMDeploy's
    ``RPNHead.predict_by_feat`` runs one NMS over all pyramid levels and drops proposals below its
    own score threshold; mmdet's runs NMS per level and keeps every score: ours does that. And
    MMDeploy clips two-stage boxes to the padded batch, mmdet to each image (``_two_stage_forward``).
    MMDeploy replaces ``adaptive_avg_pool2d`` (UPerNet's pyramid pooling) by an ``avg_pool2d``
    whose kernel is fixed at the traced size and exact only where the sizes divide; ours is exact
    at every size.
    """
    global _registered
    if _registered:
        return
    _registered = True
    from mmdeploy.core import FUNCTION_REWRITER
    for name, rewriter in (
            ('mmdet.models.roi_heads.bbox_heads.bbox_head.BBoxHead.predict_by_feat',
             _bbox_head_predict_by_feat),
            ('mmdet.models.roi_heads.cascade_roi_head.CascadeRoIHead.predict_bbox',
             _cascade_roi_head_predict_bbox),
            ('mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat', _rpn_head_predict_by_feat),
            ('mmdet.models.detectors.two_stage.TwoStageDetector.forward', _two_stage_forward),
            ('torch.nn.functional.adaptive_avg_pool2d', _adaptive_avg_pool2d)):
        FUNCTION_REWRITER.register_rewriter(name, backend='onnxruntime')(rewriter)


def _adaptive_avg_pool2d(input, output_size):
    """Adaptive average pooling as two matrix products: row i of the pooling matrix averages
    input positions floor(i * size / out) .. ceil((i + 1) * size / out) - 1, as torch does, for
    any (dynamic) input size."""
    import torch
    from mmdeploy.core import FUNCTION_REWRITER
    from torch.nn.modules.utils import _pair
    out = _pair(output_size)
    if tuple(out) == (1, 1):
        return FUNCTION_REWRITER.get_context().origin_func(input, output_size)
    shape = torch._shape_as_tensor(input)

    def pooling(size, out_size):  # [out, size]
        i = torch.arange(out_size, device=input.device, dtype=torch.float32)[:, None]
        j = torch.arange(size, device=input.device)[None].float()
        start, end = torch.floor(i * size.float() / out_size), torch.ceil((i + 1) * size.float() / out_size)
        inside = (j >= start) & (j < end)
        return inside.to(input.dtype) / (end - start).to(input.dtype)

    rows = pooling(shape[-2], out[0] if out[0] is not None else input.shape[-2])
    cols = pooling(shape[-1], out[1] if out[1] is not None else input.shape[-1])
    return torch.matmul(torch.matmul(rows, input), cols.t())


def _decode(coder, priors, deltas, batch_img_metas):
    """``coder.decode`` for [B, N, 4k] boxes clipped to each image inside the padded batch
    (``valid_shapes``, set by :func:`_two_stage_forward`), as mmdet clips: at the end, exactly."""
    import torch
    from mmdet.structures.bbox import get_box_tensor
    shapes = batch_img_metas[0].get('valid_shapes')
    if shapes is None:  # MMDeploy's clip, to the padded input
        return get_box_tensor(coder.decode(priors, deltas, max_shape=batch_img_metas[0]['img_shape']))
    boxes = get_box_tensor(coder.decode(priors, deltas, max_shape=None)).clamp(min=0)
    limits = shapes[:, [1, 0, 1, 0]].repeat(1, boxes.shape[-1] // 4)[:, None]  # [B, 1, 4k]: w h w h
    return torch.minimum(boxes, limits)


def _two_stage_forward(self, batch_inputs, data_samples=None, mode='tensor', **kwargs):
    """MMDeploy's two-stage forward clips every box to the padded input; mmdet clips to each
    image. The graph sees only the padded batch, so it finds each image in it: mmdet's data
    preprocessor pads normalised images at the bottom and right with ``pad_value``, which no
    normalised pixel equals (the means are not integers)."""
    import copy

    import torch
    filled = (batch_inputs != self.data_preprocessor.pad_value).any(1)  # [B, H, W]
    heights = (filled.any(2) * torch.arange(1, filled.shape[1] + 1, device=filled.device)).amax(1)
    widths = (filled.any(1) * torch.arange(1, filled.shape[2] + 1, device=filled.device)).amax(1)
    shapes = torch.stack([heights, widths], 1).float()
    data_samples = copy.deepcopy(data_samples)
    for sample in data_samples:  # set_field: set_metainfo would deep-copy the traced tensor
        sample.set_field(shapes, 'valid_shapes', field_type='metainfo')
        sample.set_field(torch._shape_as_tensor(batch_inputs)[2:], 'img_shape', field_type='metainfo')
    x = self.extract_feat(batch_inputs)
    proposals = self.rpn_head.predict(x, data_samples, rescale=False)
    return self.roi_head.predict(x, proposals, data_samples, rescale=False)


def _cascade_roi_head_predict_bbox(self, x, batch_img_metas, rpn_results_list, rcnn_test_cfg,
                                   rescale=False, **kwargs):
    import torch

    proposals = rpn_results_list[0]  # [B, N, 5]: boxes and scores
    batch, num_rois = proposals.shape[:2]
    batch_index = torch.arange(batch, device=proposals.device).float().view(-1, 1, 1).expand(
        batch, num_rois, 1)
    rois = torch.cat([batch_index, proposals[..., :4]], -1).reshape(-1, 5)
    scores = []
    for stage in range(self.num_stages):
        results = self._bbox_forward(stage, x, rois, **kwargs)
        cls_score = results['cls_score'].reshape(batch, num_rois, -1)
        bbox_pred = results['bbox_pred'].reshape(batch, num_rois, -1)
        scores.append(cls_score)
        if stage < self.num_stages - 1:
            head = self.bbox_head[stage]
            if not head.reg_class_agnostic:  # the deltas of each RoI's best class
                label = cls_score[..., :-1].argmax(-1)
                bbox_pred = bbox_pred.reshape(batch, num_rois, -1, 4).gather(
                    2, label[..., None, None].expand(batch, num_rois, 1, 4)).squeeze(2)
            boxes = _decode(head.bbox_coder, rois.reshape(batch, num_rois, 5)[..., 1:], bbox_pred,
                            batch_img_metas)
            rois = torch.cat([batch_index, boxes], -1).reshape(-1, 5)
    return self.bbox_head[-1].predict_by_feat(
        rois=rois.reshape(batch, num_rois, 5), cls_scores=sum(scores) / len(scores),
        bbox_preds=bbox_pred, batch_img_metas=batch_img_metas, rcnn_test_cfg=rcnn_test_cfg,
        rescale=rescale)


def _grouped_nms(boxes, scores, groups, iou_threshold, score_threshold, keep):
    """mmdet's ``batched_nms`` in ONNX: boxes [B, M, 4] and scores [B, M] of M candidates in
    ``groups`` [M] (classes, pyramid levels), NMS within each group (coordinate offsets, one
    ``NonMaxSuppression``), the best ``keep`` -> dets [B, keep, 5] and their groups [B, keep];
    rows beyond what survives have score 0 (dropped by MMDeploy's backend model)."""
    import torch
    from mmdeploy.mmcv.ops.nms import ONNXNMSop, _select_nms_index
    batch = boxes.shape[0]
    offsets = groups.to(boxes) * (boxes.max() + 1)  # boxes of two groups never overlap
    selected = ONNXNMSop.apply(boxes + offsets[None, :, None], scores[:, None], keep,
                               torch.tensor([iou_threshold], dtype=torch.float32),
                               torch.tensor([score_threshold], dtype=torch.float32))
    # pad so that the top-k inside _select_nms_index always finds ``keep`` rows
    boxes = torch.cat([boxes, boxes.new_zeros(1, keep, 4).expand(batch, keep, 4)], 1)
    scores = torch.cat([scores, scores.new_zeros(batch, keep)], 1)[:, None]
    index = torch.arange(boxes.shape[1], device=boxes.device)[None].expand(batch, -1)
    dets, _, index = _select_nms_index(scores, boxes, selected, batch, keep_top_k=keep,
                                       pre_inds=index, output_index=True)
    return dets, torch.cat([groups, groups.new_zeros(keep + 1)])[index]  # index -1: a padded row


def _bbox_head_predict_by_feat(self, rois, cls_scores, bbox_preds, batch_img_metas, rcnn_test_cfg=None,
                               rescale=False):
    import torch
    import torch.nn.functional as F

    scores = F.softmax(cls_scores, dim=-1)[..., :self.num_classes]  # [B, N, C]
    bboxes = _decode(self.bbox_coder, rois[..., 1:], bbox_preds, batch_img_metas)
    batch, num_rois = scores.shape[:2]
    classes = 1 if self.reg_class_agnostic else self.num_classes
    bboxes = bboxes.reshape(batch, num_rois, classes, 4).expand(batch, num_rois, self.num_classes, 4)
    labels = torch.arange(self.num_classes, device=scores.device).repeat(num_rois)
    return _grouped_nms(bboxes.reshape(batch, -1, 4), scores.reshape(batch, -1), labels,
                        rcnn_test_cfg.nms.iou_threshold, rcnn_test_cfg.score_thr,
                        rcnn_test_cfg.max_per_img)


def _rpn_head_predict_by_feat(self, cls_scores, bbox_preds, score_factors=None, batch_img_metas=None,
                              cfg=None, rescale=False, with_nms=True, **kwargs):
    import torch

    cfg = self.test_cfg if cfg is None else cfg
    pre = cfg.get('nms_pre', -1)
    if pre <= 0:
        raise DeployError('model.test_cfg.rpn.nms_pre must be > 0 to export (the best anchors of each '
                          'level go into NMS); mmdet configs use 1000')
    batch = cls_scores[0].shape[0]
    priors = self.prior_generator.grid_priors([s.shape[-2:] for s in cls_scores],
                                              device=cls_scores[0].device)
    kept = []
    for cls_score, bbox_pred, anchors in zip(cls_scores, bbox_preds, priors):
        cls_score = cls_score.permute(0, 2, 3, 1)
        scores = (cls_score.reshape(batch, -1).sigmoid() if self.use_sigmoid_cls else
                  cls_score.reshape(batch, -1, 2).softmax(-1)[..., 0])  # foreground is class 0
        deltas = bbox_pred.permute(0, 2, 3, 1).reshape(batch, -1, 4)
        anchors = anchors[None].expand(batch, -1, 4)
        # zero-score padding: every level yields ``pre`` candidates whatever the image size
        scores = torch.cat([scores, scores.new_zeros(batch, pre)], 1)
        deltas = torch.cat([deltas, deltas.new_zeros(batch, pre, 4)], 1)
        anchors = torch.cat([anchors, anchors.new_zeros(batch, pre, 4)], 1)
        scores, index = scores.topk(pre, dim=1)
        index = index[..., None].expand(batch, pre, 4)
        kept.append((scores, deltas.gather(1, index), anchors.gather(1, index)))
    scores, deltas, anchors = (torch.cat(parts, 1) for parts in zip(*kept))
    boxes = _decode(self.bbox_coder, anchors, deltas, batch_img_metas)
    min_size = cfg.get('min_bbox_size', -1)
    if min_size >= 0:  # mmdet drops boxes not wider and taller than min_bbox_size
        w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        scores = torch.where((w > min_size) & (h > min_size), scores, scores.new_zeros(1))
    levels = torch.arange(len(cls_scores), device=boxes.device).repeat_interleave(pre)
    return _grouped_nms(boxes, scores, levels, cfg.nms.iou_threshold, 0.0, cfg.max_per_img)


def build_pytorch_model(model_cfg: Config, checkpoint: Optional[str], device: str = 'cpu'):
    """The PyTorch model in eval mode with ``checkpoint`` (whole model or a FocalNet file)."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, DefaultScope

    from ..weights import (
        check_whole_model_checkpoint,
        is_mmengine_model_checkpoint,
        load_model_weights,
        read_checkpoint,
    )
    cfg = copy.deepcopy(model_cfg.model)
    if cfg.get('backbone', {}).get('init_cfg'):  # the checkpoint brings the weights
        cfg.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(model_cfg.default_scope):
        model = MODELS.build(cfg)
    if checkpoint is not None:
        state = read_checkpoint(checkpoint)
        if is_mmengine_model_checkpoint(state):
            check_whole_model_checkpoint(model, state, source=checkpoint)
            from mmengine.runner.checkpoint import load_checkpoint
            load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
            meta = state.get('meta', {}).get('dataset_meta')
            if meta:  # class names and palette, as the inferencers read them
                model.dataset_meta = meta
        else:
            load_model_weights(model, checkpoint)
    return revert_sync_batchnorm(model).to(device).eval()


def export(model_cfg: Config, checkpoint: Optional[str], out_dir: str, image, backend: str = 'onnxruntime',
           shape: Optional[Sequence[int]] = None, fp16: bool = False, device: str = 'cpu') -> str:
    """Write ``end2end.onnx`` (+ the engine for TensorRT), ``deploy_cfg.py`` and ``model_cfg.py``
    to ``out_dir``; returns the path of the file a backend runs. ``image`` (a path or an HxWx3
    array) is traced through the model, so detectors should see one with objects."""
    deploy_cfg = make_deploy_config(model_cfg, backend, shape, fp16)
    saved_cfg = static_test_pipeline(model_cfg, shape) if shape is not None else model_cfg
    if backend == 'tensorrt':
        check_tensorrt()
    from mmdeploy.apis import build_task_processor
    from mmdeploy.apis.onnx import export as onnx_export
    from mmdeploy.utils import get_dynamic_axes

    register_rewriters()
    os.makedirs(out_dir, exist_ok=True)
    processor = build_task_processor(saved_cfg, deploy_cfg, device)
    model = build_pytorch_model(model_cfg, checkpoint, device)
    data, inputs = processor.create_input(image, deploy_cfg.onnx_config.input_shape,
                                          data_preprocessor=model.data_preprocessor)
    onnx_cfg = deploy_cfg.onnx_config
    names = onnx_cfg.input_names + onnx_cfg.output_names
    with mmdeploy_export_fixes():
        onnx_export(model, inputs, input_metas=dict(data_samples=data['data_samples'], mode='predict'),
                    output_path_prefix=osp.join(out_dir, 'end2end'), backend=backend,
                    input_names=onnx_cfg.input_names, output_names=onnx_cfg.output_names,
                    context_info=dict(deploy_cfg=deploy_cfg), opset_version=onnx_cfg.opset_version,
                    dynamic_axes=get_dynamic_axes(deploy_cfg, names),
                    keep_initializers_as_inputs=False, optimize=onnx_cfg.optimize)
    deploy_cfg.dump(osp.join(out_dir, 'deploy_cfg.py'))
    meta = getattr(model, 'dataset_meta', None)
    if meta:
        with open(osp.join(out_dir, META_FILE), 'w') as f:
            json.dump(meta, f, default=list)
    saved_cfg.dump(osp.join(out_dir, 'model_cfg.py'))
    onnx_path = osp.join(out_dir, ONNX_FILE)
    if backend == 'tensorrt':
        from mmdeploy.apis.tensorrt import onnx2tensorrt
        onnx2tensorrt(out_dir, ENGINE_FILE, 0, deploy_cfg, onnx_path, device='cuda:0')
        return osp.join(out_dir, ENGINE_FILE)
    return onnx_path


def check_tensorrt() -> None:
    """One line naming what to install when the TensorRT Python package or a GPU is missing."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise DeployError('--backend tensorrt needs TensorRT: pip install tensorrt==8.6.1 on a CUDA '
                          '11 GPU machine (MMDeploy 1.3.1\'s bundled TensorRT plugins link TensorRT 8 '
                          'and CUDA 11); or export --backend onnxruntime and build the engine with '
                          'trtexec (docs/deploy.md)') from None
    import torch
    if not torch.cuda.is_available():
        raise DeployError('--backend tensorrt builds on a CUDA GPU; none is visible to torch here')


def match_detections(expected, got, top: int = 10, score_tol: float = 1e-4):
    """Pair each of the ``top`` best ``expected`` detections with the ``got`` detection of the same
    label and score (within ``score_tol``, relative to 1) whose box is closest; scores that tie
    may come in either order from two runtimes. Arguments: (bboxes, scores, labels) tensors.
    Returns [(i, j, largest relative box difference)]; j is None where nothing pairs."""
    import torch
    (boxes_a, scores_a, labels_a), (boxes_b, scores_b, labels_b) = expected, got
    pairs = []
    for i in range(min(top, len(scores_a))):
        same = (labels_b == labels_a[i]) & ((scores_b - scores_a[i]).abs() <= score_tol)
        if not same.any():
            pairs.append((i, None, float('inf')))
            continue
        rel = ((boxes_b - boxes_a[i]).abs() / boxes_a[i].abs().clamp(min=1)).amax(-1)
        rel = torch.where(same, rel, torch.full_like(rel, float('inf')))
        j = int(rel.argmin())
        pairs.append((i, j, float(rel[j])))
    return pairs


def deployed_files(path: str):
    """(model file, deploy_cfg.py, model_cfg.py) of an export: ``path`` is the file or its folder."""
    folder = path if osp.isdir(path) else osp.dirname(path) or '.'
    model_file = osp.join(path, ONNX_FILE) if osp.isdir(path) else path
    files = (model_file, osp.join(folder, 'deploy_cfg.py'), osp.join(folder, 'model_cfg.py'))
    for file in files:
        if not osp.isfile(file):
            raise FileNotFoundError(f'{file} not found: give end2end.onnx (or .engine) in a folder '
                                    'written by tools/deploy.py')
    return files


def is_deployed(path: str) -> bool:
    return path.endswith(('.onnx', '.engine'))


def build_backend_model(path: str, device: str = 'cpu', model_cfg: Optional[Config] = None):
    """The exported model as an mmengine model (``test_step`` gives the library's data samples).

    ``model_cfg`` (default: the export's ``model_cfg.py``) supplies the data preprocessor and the
    class names.
    """
    model_file, deploy_file, model_file_cfg = deployed_files(path)
    from mmdeploy.apis import build_task_processor
    deploy_cfg = Config.fromfile(deploy_file)
    model_cfg = model_cfg if model_cfg is not None else Config.fromfile(model_file_cfg)
    processor = build_task_processor(model_cfg, deploy_cfg, device)
    model = processor.build_backend_model([model_file])
    meta_file = osp.join(osp.dirname(model_file), META_FILE)
    if osp.isfile(meta_file):
        with open(meta_file) as f:
            model.dataset_meta = json.load(f)
    return model


def deployed_config(cfg: Config, path: str) -> Config:
    """``cfg`` as the export at ``path`` expects it (a static detector resizes to its size)."""
    from mmdeploy.utils import get_input_shape
    shape = get_input_shape(Config.fromfile(deployed_files(path)[1]))
    return cfg if shape is None else static_test_pipeline(cfg, (shape[1], shape[0]))
