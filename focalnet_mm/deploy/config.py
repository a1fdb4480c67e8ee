"""What an export is: the MMDeploy deploy config written from a model config, and the files of
an export directory.

MMDeploy 1.3.1 ships no deploy configs in its wheel, so :func:`make_deploy_config` writes one from
the model config: the post-processing limits that MMDeploy does not read from ``model.test_cfg``
are set from it, so the export keeps what the PyTorch model does.

An export directory holds ``end2end.onnx`` (or ``end2end.engine``), ``deploy_cfg.py`` (the deploy
config used), ``model_cfg.py`` (the model config, with the test pipeline the export expects) and,
when the checkpoint names them, the classes and palette (``dataset_meta.json``).
"""
import copy
from typing import Optional, Sequence

from mmengine.config import Config

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
