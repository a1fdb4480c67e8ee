"""Deployment: a trained detector, segmentor or classifier -> ``end2end.onnx`` -> ONNX Runtime.

- :mod:`.config`: the MMDeploy deploy config written from a model config, the export's files;
- :mod:`.export`: the export itself (``tools/deploy.py``);
- :mod:`.backend`: an export loaded back as an mmengine model (``tools/test.py``,
  ``tools/infer.py --onnx``) and compared with PyTorch;
- :mod:`.rewriters`: where MMDeploy's own rewriters do not reproduce mmdet / mmseg.

Importing this package imports neither MMDeploy nor ONNX Runtime (they load when used).
"""
from .backend import (
    build_backend_model,
    deployed_config,
    deployed_files,
    is_deployed,
    match_detections,
)
from .config import BACKENDS, DeployError, make_deploy_config, static_test_pipeline, test_scale
from .export import build_pytorch_model, check_tensorrt, export
from .rewriters import register_rewriters

__all__ = [
    'BACKENDS', 'DeployError', 'build_backend_model', 'build_pytorch_model', 'check_tensorrt',
    'deployed_config', 'deployed_files', 'export', 'is_deployed', 'make_deploy_config',
    'match_detections', 'register_rewriters', 'static_test_pipeline',
    'test_scale'
]
