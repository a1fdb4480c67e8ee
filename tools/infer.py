"""Predict on images with a FocalNet detector, segmentor or classifier and save painted results.

mmdet's demo/image_demo.py command line, for the three libraries (their own inferencers run:
DetInferencer, MMSegInferencer, ImageClassificationInferencer):

    python tools/infer.py demo.jpg configs/maskrcnn_focalnet_t_3x.py --weights epoch_36.pth
    python tools/infer.py images/ configs/seg/upernet_focalnet_t_lrf_512x512_160k_ade20k.py \\
        --weights focalnet_tiny_lrf_upernet_160k.pth --device cuda
    python tools/infer.py demo.jpg configs/cls/focalnet_t_srf_in1k.py --weights focalnet://tiny_srf

With --onnx DEPLOYED (end2end.onnx / .engine written by tools/deploy.py) the exported model
runs instead of PyTorch (which is not built), with the same pipeline, painting and JSON, and the
class names and colours saved with the export (its checkpoint's):

    python tools/infer.py demo.jpg configs/maskrcnn_focalnet_t_3x.py --onnx deploy/maskrcnn/end2end.onnx

WEIGHTS is a whole-model checkpoint (tools/train.py's, or a released detector/segmentor) or a
FocalNet file in the official / timm / HF format (classification files bring their head).
Painted images go to OUT_DIR/vis, predictions (JSON) to OUT_DIR/preds.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without install

from mmengine.config import Config  # noqa: E402

import focalnet_mm  # noqa: E402,F401  (compat fixes + registration before anything is built)
from focalnet_mm.visualization.inputs import IMAGE_EXTENSIONS, list_images  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Inference with a FocalNet model')
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config', help='a det / seg / cls config')
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument('--weights', help='checkpoint (whole model, or a FocalNet file)')
    weights.add_argument('--onnx', help='a model exported by tools/deploy.py (end2end.onnx or .engine)')
    parser.add_argument('--out-dir', default=osp.join('work_dirs', 'infer'),
                        help='where vis/ and preds/ are written (default work_dirs/infer)')
    parser.add_argument('--device', default=None, help='cpu, cuda or cuda:N (default: cuda if any)')
    parser.add_argument('--pred-score-thr', type=float, default=0.3,
                        help='detection: draw boxes and masks above this score')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--show', action='store_true', help='show each result in a window')
    parser.add_argument('--no-save-vis', action='store_true', help='do not write painted images')
    parser.add_argument('--no-save-pred', action='store_true', help='do not write prediction JSON')
    parser.add_argument('--print-result', action='store_true', help='print the predictions')
    return parser.parse_args(argv)


def check_inputs(args):
    """One-line errors before any model is built."""
    if not osp.exists(args.inputs):
        raise FileNotFoundError(f'input {args.inputs} not found (give an image or a folder of images)')
    try:
        list_images([args.inputs])
    except FileNotFoundError:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in {args.inputs}') from None
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config {args.config} not found (see configs/det, configs/seg, '
                                'configs/cls)')
    if args.weights and '://' not in args.weights and not osp.isfile(args.weights):
        raise FileNotFoundError(f'weights {args.weights} not found')
    if args.onnx:
        from focalnet_mm.deploy import deployed_files, is_deployed
        if not is_deployed(args.onnx):
            raise ValueError(f'--onnx {args.onnx}: give end2end.onnx or end2end.engine from tools/deploy.py')
        deployed_files(args.onnx)
    if args.batch_size < 1:
        raise ValueError('--batch-size must be >= 1')


def build_inferencer(config, weights, device, deployed=None):
    """The library's inferencer for ``config``; FocalNet-format weights are loaded by us, and an
    exported model (``deployed``: tools/deploy.py's end2end.onnx / .engine) replaces PyTorch's.

    The inferencers set mmengine's global default scope; it is restored on return (run the
    inferencer inside ``DefaultScope.overwrite_default_scope(scope)``, as :func:`main` does).
    """
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(config)
    scope = cfg.get('default_scope')
    if deployed:
        from focalnet_mm.deploy import deployed_config
        cfg = deployed_config(cfg, deployed)
    if 'visualizer' in cfg:
        # mmengine visualizers are process-wide instances looked up by name: under the config's
        # usual 'visualizer' a Runner built later in this process would get the inferencer's
        cfg.visualizer.name = 'focalnet_infer'
    with DefaultScope.overwrite_default_scope(scope):
        if deployed:
            return scope, _deployed_inferencer(cfg, config, scope, deployed, device or 'cpu')
        return scope, _build_inferencer(cfg, config, scope, weights, device)


def _inferencer_class(scope, config):
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        return DetInferencer
    if scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        return MMSegInferencer
    if scope == 'mmpretrain':
        from mmpretrain.apis import ImageClassificationInferencer
        return ImageClassificationInferencer
    raise ValueError(f'{config}: default_scope {scope!r}; use a config from configs/det, '
                     'configs/seg or configs/cls (mmdet, mmseg or mmpretrain)')


def _deployed_inferencer(cfg, config, scope, deployed, device):
    """The library's inferencer built around the export: its model is loaded in place of the
    PyTorch one (which is never built, so nothing warns of random weights or default classes),
    and the classes and palette are the export's (its checkpoint's), as a checkpoint's would be."""
    from focalnet_mm.deploy import build_backend_model
    base = _inferencer_class(scope, config)
    model = build_backend_model(deployed, device=device, model_cfg=cfg)
    meta = getattr(model, 'dataset_meta', None)
    if not meta:
        print(f'warning: {deployed} comes without dataset_meta.json (its checkpoint named no '
              'classes): results are painted without its class names', flush=True)
    if scope == 'mmpretrain':  # takes a built model; its config is read from model._config
        model._config = cfg
        return base(model=model, pretrained=False, device=device,
                    classes=(meta or {}).get('classes'))

    class DeployedInferencer(base):
        def _init_model(self, cfg, weights, device):
            model.cfg = cfg
            if scope == 'mmdet' and not getattr(model, 'dataset_meta', None):  # (warned above)
                from mmdet.evaluation import get_classes
                model.dataset_meta = {'classes': get_classes('coco')}
            return model

    if scope == 'mmdet':
        return DeployedInferencer(model=cfg, weights=deployed, device=device, show_progress=False)
    meta = meta or {}
    return DeployedInferencer(model=cfg, weights=deployed, device=device,
                              classes=meta.get('classes'), palette=meta.get('palette'))


def _build_inferencer(cfg, config, scope, weights, device):
    from focalnet_mm.weights import (
        check_whole_model_checkpoint,
        is_mmengine_model_checkpoint,
        load_model_weights,
        read_checkpoint,
    )
    checkpoint = None if weights is None else read_checkpoint(weights)  # once; the library reads again
    foreign = checkpoint is not None and not is_mmengine_model_checkpoint(checkpoint)
    whole = None if foreign else weights
    inferencer_class = _inferencer_class(scope, config)
    if scope == 'mmdet':
        inferencer = inferencer_class(model=cfg, weights=whole, device=device, show_progress=False)
    elif scope == 'mmseg':
        inferencer = inferencer_class(model=cfg, weights=whole, device=device)
    else:
        inferencer = inferencer_class(model=cfg, pretrained=whole or False, device=device)
    if foreign:
        load_model_weights(inferencer.model, weights)
    elif weights is not None:  # the inferencer's load only warns about a file that does not fit
        check_whole_model_checkpoint(inferencer.model, checkpoint, source=weights)
    meta = getattr(inferencer.model, 'dataset_meta', None) or {}
    if scope == 'mmseg' and meta.get('classes') and meta.get('palette'):
        # MMSegInferencer paints with Cityscapes' names and colours unless told the checkpoint's
        inferencer.visualizer.set_dataset_meta(meta['classes'], meta['palette'])
    return inferencer


def run(scope, inferencer, images, args):
    """Predictions as JSON-ready dicts, one per image, plus the files the library wrote."""
    if scope == 'mmdet':
        out = inferencer(images, batch_size=args.batch_size, out_dir=args.out_dir,
                         pred_score_thr=args.pred_score_thr, show=args.show,
                         no_save_vis=args.no_save_vis, no_save_pred=args.no_save_pred)
        return out['predictions']
    if scope == 'mmseg':
        from mmengine.infer import BaseInferencer
        from PIL import Image
        # MMSegInferencer.__call__ can only write both or neither; its base takes each folder.
        # Its label maps would be named by position (00000000_pred.png): written here instead,
        # named after their images.
        out = BaseInferencer.__call__(
            inferencer, inputs=images, batch_size=args.batch_size, show=args.show,
            img_out_dir='' if args.no_save_vis else osp.join(args.out_dir, 'vis'), pred_out_dir='')
        maps = out['predictions'] if len(images) > 1 else [out['predictions']]
        if not args.no_save_pred:
            os.makedirs(osp.join(args.out_dir, 'preds'), exist_ok=True)
            for image, label_map in zip(images, maps):  # pixel value = class index
                name = osp.splitext(osp.basename(image))[0] + '.png'
                Image.fromarray(label_map.astype('uint8')).save(osp.join(args.out_dir, 'preds', name))
        return [dict(sem_seg_shape=list(m.shape), classes_present=sorted(int(c) for c in set(m.ravel())))
                for m in maps]
    show_dir = '' if args.no_save_vis else osp.join(args.out_dir, 'vis')
    if show_dir:
        os.makedirs(show_dir, exist_ok=True)  # mmpretrain creates only the last level
    predictions = inferencer(images, batch_size=args.batch_size, show=args.show,
                             show_dir=show_dir or None)
    result = [{k: (v.tolist() if hasattr(v, 'tolist') else v) for k, v in p.items()}
              for p in predictions]
    if not args.no_save_pred:  # mmdet/mmseg write their own; mmpretrain's inferencer does not
        os.makedirs(osp.join(args.out_dir, 'preds'), exist_ok=True)
        for image, pred in zip(images, result):
            name = osp.splitext(osp.basename(image))[0] + '.json'
            with open(osp.join(args.out_dir, 'preds', name), 'w') as f:
                json.dump({k: v for k, v in pred.items() if k != 'pred_scores'}, f)
    return result


def main(argv=None):
    args = parse_args(argv)
    try:
        check_inputs(args)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    images = list_images([args.inputs])
    if args.weights is None and args.onnx is None:
        print('warning: no --weights: the model has random weights', flush=True)
    from focalnet_mm.weights import WeightsHashError, WeightsUnavailableError
    try:
        scope, inferencer = build_inferencer(args.config, args.weights, args.device, args.onnx)
    except (ValueError, FileNotFoundError, WeightsUnavailableError, WeightsHashError) as e:
        sys.exit(f'error: {e}')
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        predictions = run(scope, inferencer, images, args)
    if args.print_result:
        for image, pred in zip(images, predictions):
            print(image, json.dumps(pred)[:2000])
    wrote = [d for d in ('vis', 'preds') if osp.isdir(osp.join(args.out_dir, d))]
    print(f'{len(images)} image(s) done; results in {args.out_dir}/' +
          (f' ({", ".join(wrote)})' if wrote else ''))
    return predictions


if __name__ == '__main__':
    main()
