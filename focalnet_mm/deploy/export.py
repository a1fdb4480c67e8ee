"""Export: a trained detector, segmentor or classifier -> ``end2end.onnx`` (+ a TensorRT engine).

MMDeploy 1.3.1 does the work (its rewriters, plus ours in :mod:`.rewriters`, turn mmdet's
post-processing into ONNX ``TopK``, ``NonMaxSuppression`` and ``RoiAlign``).
:func:`mmdeploy_export_fixes` (compat) makes MMDeploy run with torch >= 2.9.
"""
import copy
import json
import os
import os.path as osp
from typing import Optional, Sequence

from mmengine.config import Config

from ..compat import mmdeploy_export_fixes
from .config import ENGINE_FILE, META_FILE, ONNX_FILE, DeployError, make_deploy_config, static_test_pipeline
from .rewriters import register_rewriters


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
