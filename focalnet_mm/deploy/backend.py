"""Loading an export back: the exported model as an mmengine model whose ``test_step`` gives the
libraries' data samples (MMDeploy's backend models), with the classes and palette of its
checkpoint, and the comparison of its detections with PyTorch's.
"""
import json
import os.path as osp
from typing import Optional

from mmengine.config import Config

from .config import META_FILE, ONNX_FILE, static_test_pipeline


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
    meta = read_dataset_meta(model_file)
    if meta is not None:
        model.dataset_meta = meta
    return model


def read_dataset_meta(path: str) -> Optional[dict]:
    """The classes and palette of an export (``path``: its file or folder) as its checkpoint held
    them, None when it names none. JSON stored tuples as lists: the classes come back as a tuple
    and the palette as a list of (r, g, b) tuples, as the data sets give them (mmdet reads a
    palette list as colours, and mmengine a colour list as several colours)."""
    folder = path if osp.isdir(path) else osp.dirname(path) or '.'
    meta_file = osp.join(folder, META_FILE)
    if not osp.isfile(meta_file):
        return None
    with open(meta_file) as f:
        meta = json.load(f)
    if isinstance(meta.get('classes'), list):
        meta['classes'] = tuple(meta['classes'])
    if isinstance(meta.get('palette'), list):
        meta['palette'] = [tuple(c) if isinstance(c, list) else c for c in meta['palette']]
    return meta


def deployed_config(cfg: Config, path: str) -> Config:
    """``cfg`` as the export at ``path`` expects it (a static detector resizes to its size)."""
    from mmdeploy.utils import get_input_shape
    shape = get_input_shape(Config.fromfile(deployed_files(path)[1]))
    return cfg if shape is None else static_test_pipeline(cfg, (shape[1], shape[0]))
