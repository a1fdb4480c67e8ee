"""Export a trained FocalNet detector, segmentor or classifier to ONNX (ONNX Runtime / TensorRT).

    python tools/deploy.py configs/maskrcnn_focalnet_t_3x.py epoch_36.pth --out deploy/maskrcnn
    python tools/deploy.py configs/seg/upernet_focalnet_t_lrf_512x512_160k_ade20k.py seg.pth \\
        --out deploy/upernet --shape 512 512
    python tools/deploy.py CONFIG CKPT --out deploy/trt --backend tensorrt --shape 800 1344 --fp16

Writes OUT/end2end.onnx (+ end2end.engine for TensorRT), OUT/deploy_cfg.py (the MMDeploy config
used) and OUT/model_cfg.py. Without --shape the export takes any batch, height and width.
--verify runs the export with ONNX Runtime next to PyTorch on the traced image and prints how far
apart they are. Run it with tools/infer.py --onnx and evaluate it with tools/test.py (docs/deploy.md).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without install

from mmengine.config import DictAction  # noqa: E402

import focalnet_mm  # noqa: E402,F401  (compat fixes + registration before anything is built)
from focalnet_mm.config.loading import load_config  # noqa: E402
from focalnet_mm.deploy import BACKENDS, DeployError  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export a FocalNet model to ONNX / TensorRT')
    parser.add_argument('config', help='the det / seg / cls config the model was trained with')
    parser.add_argument('checkpoint', help='checkpoint (whole model, or a FocalNet file)')
    parser.add_argument('--out', required=True, help='folder for end2end.onnx and the configs')
    parser.add_argument('--backend', choices=BACKENDS, default='onnxruntime')
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument('--shape', nargs=2, type=int, metavar=('H', 'W'),
                       help='a static input size (detectors then resize every image to it)')
    shape.add_argument('--dynamic', action='store_true',
                       help='any batch, height and width (the default)')
    parser.add_argument('--fp16', action='store_true', help='half-precision TensorRT engine')
    parser.add_argument('--image', help='image traced through the model (default: the first test '
                        'image of the config\'s dataset, else a random one at the test size)')
    parser.add_argument('--device', default='cpu', help='device of the PyTorch model while exporting')
    parser.add_argument('--verify', action='store_true',
                        help='compare ONNX Runtime with PyTorch on the traced image')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.test_cfg.rcnn.score_thr=0.3')
    return parser.parse_args(argv)


def trace_image(cfg, image, out_dir):
    """The image to trace: --image, else the first test image found on disk, else random pixels
    at the test size (written to OUT/trace_image.png)."""
    if image is not None:
        if not osp.isfile(image):
            raise FileNotFoundError(f'--image {image} not found')
        return image
    try:
        from mmengine.registry import DATASETS, DefaultScope

        from focalnet_mm.checks.data_paths import leaf_datasets
        dataset_cfg = next(leaf_datasets(cfg.test_dataloader.dataset))
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            dataset = DATASETS.build(dict(dataset_cfg, pipeline=[], lazy_init=False))
        path = dataset.get_data_info(0)['img_path']
        if osp.isfile(path):
            return path
    except Exception:  # no data here: any image traces the same graph
        pass
    import numpy as np
    from PIL import Image

    from focalnet_mm.deploy import test_scale
    h, w = test_scale(cfg)
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(out_dir, 'trace_image.png')
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def verify(cfg, checkpoint, model_file, image, device):
    """Largest differences between the export (ONNX Runtime) and PyTorch on one image."""
    import torch
    from mmengine.config import Config
    from mmengine.dataset import Compose, pseudo_collate
    from mmengine.registry import DefaultScope

    from focalnet_mm.deploy import build_backend_model, build_pytorch_model
    saved_cfg = Config.fromfile(osp.join(osp.dirname(model_file), 'model_cfg.py'))
    pipeline_cfg = [t for t in saved_cfg.test_pipeline if 'Annotation' not in t['type']]
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        pipeline = Compose(pipeline_cfg)
        data = pseudo_collate([pipeline(dict(img_path=image))])
        torch_model = build_pytorch_model(cfg, checkpoint, device)
        onnx_model = build_backend_model(model_file, device)
        with torch.no_grad():
            expected = torch_model.test_step(data)[0]
            got = onnx_model.test_step(data)[0]
    return compare(expected, got)


def compare(expected, got) -> dict:
    """Numbers that say whether two predictions of one image agree (det / seg / cls); detections
    are paired by label and score (see ``match_detections``)."""
    if 'pred_instances' in expected:
        from focalnet_mm.deploy import match_detections
        a, b = expected.pred_instances, got.pred_instances
        pairs = match_detections((a.bboxes, a.scores, a.labels),
                                 (b.bboxes, b.scores.to(a.scores), b.labels.to(a.labels)))
        result = dict(instances=(len(a), len(b)), top=len(pairs),
                      unmatched=sum(j is None for _, j, _ in pairs),
                      box_rel_diff=max((r for _, _, r in pairs), default=0.0))
        if 'masks' in a and 'masks' in b and pairs and not result['unmatched']:
            ma = a.masks[[i for i, _, _ in pairs]].bool()
            mb = b.masks[[j for _, j, _ in pairs]].bool()
            union = (ma | mb).flatten(1).sum(1).clamp(min=1)
            result['mask_iou_min'] = float(((ma & mb).flatten(1).sum(1) / union).min())
        return result
    if 'pred_sem_seg' in expected:
        a, b = expected.pred_sem_seg.data, got.pred_sem_seg.data
        return dict(pixel_agreement=float((a == b).float().mean()))
    a, b = expected.pred_score, got.pred_score
    return dict(score_diff=float((a - b.to(a)).abs().max()),
                same_label=bool(expected.pred_label.item() == got.pred_label.item()))


def main(argv=None):
    args = parse_args(argv)
    try:
        if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
            raise FileNotFoundError(f'checkpoint {args.checkpoint} not found')
        cfg = load_config(args.config, args.cfg_options)
        from focalnet_mm.deploy import check_tensorrt, export, make_deploy_config
        make_deploy_config(cfg, args.backend, args.shape, args.fp16)  # refuses before building
        if args.backend == 'tensorrt':
            check_tensorrt()
        image = trace_image(cfg, args.image, args.out)
        print(f'exporting {args.config} ({cfg.model.type}) to {args.out} for {args.backend}, '
              + (f'static {args.shape[0]}x{args.shape[1]}' if args.shape else 'dynamic shape'), flush=True)
        path = export(cfg, args.checkpoint, args.out, image, args.backend, args.shape, args.fp16,
                      args.device)
    except (DeployError, FileNotFoundError) as e:  # one line that names the fix
        sys.exit(f'error: {e}')
    print(f'wrote {path} (+ deploy_cfg.py, model_cfg.py)', flush=True)
    if args.verify:
        result = verify(cfg, args.checkpoint, path, image, args.device)
        print('ONNX Runtime vs PyTorch: ' + ', '.join(f'{k}={v}' for k, v in result.items()))
        return path, result
    return path, None


if __name__ == '__main__':
    main()
