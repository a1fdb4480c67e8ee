"""Our MMDeploy rewriters (ONNX Runtime), each where MMDeploy 1.3.1's own does not give what
mmdet / mmseg compute in PyTorch; docs/deploy.md lists them with what was measured.

Each function says which upstream behaviour it corrects and which test shows the difference.
They are registered once per process by :func:`register_rewriters` (``export`` calls it).
"""
from .config import DeployError

_registered = False


def register_rewriters() -> None:
    """Register ours for ONNX Runtime (once per process); MMDeploy's own stay in force for the
    other backends (TensorRT uses its plugins and its own R-CNN box rewrite)."""
    global _registered
    if _registered:
        return
    _registered = True
    _find_callers_without_inspect_stack()
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


def _find_callers_without_inspect_stack() -> None:
    """MMDeploy 1.3.1's rewriters find the function that asks for its context with
    ``inspect.stack()[top]``, which reads the source file of every frame on the stack (and maps
    each to its module) at each call: about 0.4 s per rewritten call under a deep stack, most of
    an export's or a rewritten forward's time. The frame ``top`` levels up gives the same function
    (its globals and code name) without that, in both places that import it."""
    import sys

    from mmdeploy.core.rewriters import function_rewriter, rewriter_utils, symbolic_rewriter

    def get_frame_func(top: int = 1):
        frame = sys._getframe(top)  # 0: this function, as inspect.stack()[0]
        g_vars, func_name = frame.f_globals, frame.f_code.co_name
        assert func_name in g_vars, f'Can not find function: {func_name} in global.'
        return g_vars[func_name]

    for module in (rewriter_utils, function_rewriter, symbolic_rewriter):
        module.get_frame_func = get_frame_func


def _adaptive_avg_pool2d(input, output_size):
    """``F.adaptive_avg_pool2d`` (UPerNet's pyramid pooling) exact at every input size.

    Corrects MMDeploy's ``adaptive_avg_pool2d__default``, an ``avg_pool2d`` whose kernel is fixed
    at the traced size: exact only where the feature size divides the output size (a 16x20 map
    pooled to 6 gets an 8x6 output). Shown by
    ``tests/test_deploy.py::test_adaptive_pool_rewriter_exact_where_sizes_do_not_divide``.

    Two matrix products: row i of the pooling matrix averages input positions
    floor(i * size / out) .. ceil((i + 1) * size / out) - 1, as torch does, for any (dynamic)
    input size."""
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
    """``TwoStageDetector.forward`` clipping boxes to each image of the batch, as mmdet does.

    Corrects MMDeploy's ``two_stage_detector__forward``, which clips every box to the padded
    input. Shown by ``tests/test_deploy.py::test_mask_rcnn_rewriters_each_needed_for_mmdet_results``
    ``[two_stage]``.

    The graph sees only the padded batch, so it finds each image in it: mmdet's data
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
    """``CascadeRoIHead.predict_bbox`` with class-specific intermediate stages (FocalNet's Cascade
    Mask R-CNN recipe): each RoI is refined with its best class's box, as mmdet's ``_refine_roi``.

    Corrects MMDeploy's ``cascade_roi_head__predict_bbox``, which asserts class-agnostic stages.
    Shown by ``tests/test_deploy.py::test_cascade_rewriter_needed_for_class_specific_stages``.
    """
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
    # thresholds as Python numbers: the op's symbolic makes them ONNX constants (tensors here
    # would be traced as constants with a TracerWarning each, and again in its forward)
    selected = ONNXNMSop.apply(boxes + offsets[None, :, None], scores[:, None], keep,
                               float(iou_threshold), float(score_threshold))
    # pad so that the top-k inside _select_nms_index always finds ``keep`` rows
    boxes = torch.cat([boxes, boxes.new_zeros(1, keep, 4).expand(batch, keep, 4)], 1)
    scores = torch.cat([scores, scores.new_zeros(batch, keep)], 1)[:, None]
    index = torch.arange(boxes.shape[1], device=boxes.device)[None].expand(batch, -1)
    dets, _, index = _select_nms_index(scores, boxes, selected, batch, keep_top_k=keep,
                                       pre_inds=index, output_index=True)
    return dets, torch.cat([groups, groups.new_zeros(keep + 1)])[index]  # index -1: a padded row


def _bbox_head_predict_by_feat(self, rois, cls_scores, bbox_preds, batch_img_metas, rcnn_test_cfg=None,
                               rescale=False):
    """``BBoxHead.predict_by_feat`` as mmdet's ``multiclass_nms``: every (RoI, class) pair above
    ``score_thr`` with its own box, NMS per class, the best ``max_per_img`` kept.

    Corrects MMDeploy's ``bbox_head__predict_by_feat``, which for class-specific box regression
    (Mask R-CNN) keeps only each RoI's best-class box, so detections of other classes sit on the
    wrong box. Shown by ``tests/test_deploy.py::test_mask_rcnn_rewriters_each_needed_for_mmdet_results``
    ``[bbox_head]``.
    """
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
    """``RPNHead.predict_by_feat`` as mmdet's: the best ``nms_pre`` anchors of each level, NMS per
    level, every score kept, boxes not wider and taller than ``min_bbox_size`` dropped.

    Corrects MMDeploy's ``rpn_head__predict_by_feat``, which runs one NMS over all levels and
    drops proposals below its own score threshold. Shown by
    ``tests/test_deploy.py::test_mask_rcnn_rewriters_each_needed_for_mmdet_results[rpn_head]``.
    """
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
