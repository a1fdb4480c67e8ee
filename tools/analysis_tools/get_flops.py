"""Parameters and FLOPs of a config's model on one random image (no data set, no checkpoint).

    python tools/analysis_tools/get_flops.py configs/maskrcnn_focalnet_t_3x.py
    python tools/analysis_tools/get_flops.py CONFIG --shape 1280 800 --show-table

Like mmdet's tools/analysis_tools/get_flops.py, but the input is a random (1, 3, H, W) tensor
instead of images from the validation set, so the numbers compare with the official tables,
which were measured at ``--shape 1280 800`` (H=1280, W=800) with mmdet 2.x. Counted with
mmengine's FlopAnalyzer (fvcore conventions: one fused multiply-add = one FLOP; element-wise ops
and mmcv ops such as RoIAlign are not counted, and are listed). Detectors run their ``tensor``
mode: backbone, neck and heads on the proposals the RPN makes, the work mmdet 2.x's
``forward_dummy`` measured; as there, mask heads see the first 100 proposals (``--mask-rois``;
mmdet 3.x's Cascade tensor mode would run them on all 1000). The model gets its own random
initialisation; the backbone's pretrained checkpoint is not loaded, so nothing is downloaded.
Large-kernel depthwise convolutions are memory-bound: FLOPs understate FocalNet's run time
(see tools/analysis_tools/benchmark_backbone.py).
"""
import argparse
import os.path as osp
import sys
import time
from functools import partial

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.analysis import FlopAnalyzer, parameter_count  # noqa: E402
from mmengine.analysis.print_helper import complexity_stats_table  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.model import revert_sync_batchnorm  # noqa: E402
from mmengine.registry import DefaultScope, init_default_scope  # noqa: E402

import focalnet_mm  # noqa: E402,F401  (registers FocalNet, compat fixes)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Params and FLOPs of a model on a random input (no data set needed)')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--shape', type=int, nargs='+', default=[1280, 800],
                        help='input size: H W, or one value for a square (default 1280 800, '
                        'the official tables)')
    parser.add_argument('--mask-rois', type=int, default=100,
                        help='proposals the mask head(s) run on (default 100, the mmdet 2.x '
                        'convention of the official tables); 0 for no cap')
    parser.add_argument('--show-table', action='store_true',
                        help='also print the per-module table')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.backbone.focal_levels=[2,2,2,2]')
    return parser.parse_args(argv)


def input_hw(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    raise ValueError(f'--shape takes H W or one size, got {len(shape)} values: {shape}')


def build_model(cfg: Config) -> torch.nn.Module:
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    registry = {
        'mmdet': 'mmdet.registry', 'mmseg': 'mmseg.registry', 'mmpretrain': 'mmpretrain.registry'
    }.get(scope)
    if registry is None:
        raise ValueError(f'{cfg.filename}: default_scope {scope!r} is not mmdet, mmseg or '
                         'mmpretrain; set default_scope in the config.')
    models = __import__(registry, fromlist=['MODELS']).MODELS
    model_cfg = cfg.model.copy()
    if model_cfg.get('backbone', {}).get('init_cfg') is not None:
        model_cfg.backbone = dict(model_cfg.backbone, init_cfg=None)  # no download
    model = revert_sync_batchnorm(models.build(model_cfg))  # SyncBN needs no process group
    # the heads' own initialisation: random weights otherwise make e.g. Sparse R-CNN regress
    # degenerate boxes that RoIAlign refuses
    model.init_weights()
    return model.eval()


def data_samples_for(model, scope: str, h: int, w: int):
    """Meta information the detectors' tensor mode reads (image and padded batch shapes)."""
    if scope != 'mmdet':
        return None
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
        scale_factor=(1.0, 1.0)))
    # Sparse R-CNN's tensor mode unpacks (unused) ground truth
    sample.gt_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long())
    return [sample]


def cap_mask_rois(model: torch.nn.Module, max_rois: int) -> None:
    """Make the RoI head's mask branch see only the first ``max_rois`` proposals.

    mmdet 2.x ``forward_dummy`` (the official FLOPs) and mmdet 3.x's StandardRoIHead use 100;
    mmdet 3.x's CascadeRoIHead tensor mode passes every proposal to each stage's mask head."""
    roi_head = getattr(model, 'roi_head', None)
    if not max_rois or not getattr(roi_head, 'with_mask', False):
        return
    mask_forward = roi_head._mask_forward  # (x, rois) standard, (stage, x, rois) cascade

    def capped(*args, **kwargs):
        rois = kwargs['rois'] if 'rois' in kwargs else args[-1]
        if 'rois' in kwargs:
            kwargs['rois'] = rois[:max_rois]
        else:
            args = (*args[:-1], rois[:max_rois])
        results = mask_forward(*args, **kwargs)
        preds = results['mask_preds']
        if len(preds) < len(rois):  # cascade splits the masks per image: keep the row count
            pad = preds.new_zeros((len(rois) - len(preds), *preds.shape[1:]))
            results['mask_preds'] = torch.cat([preds, pad])
        return results

    roi_head._mask_forward = capped


def complexity(cfg: Config, h: int, w: int, show_table: bool = False, seed: int = 0,
               mask_rois: int = 100) -> dict:
    """Params and FLOPs of ``cfg.model`` on one random (1, 3, h, w) image, padded like the
    model's data preprocessor would (to its ``pad_size_divisor``)."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    cap_mask_rois(model, mask_rois)
    divisor = cfg.model.get('data_preprocessor', {}).get('pad_size_divisor', 1) or 1
    ph, pw = -(-h // divisor) * divisor, -(-w // divisor) * divisor
    inputs = torch.randn(1, 3, ph, pw)
    scope = DefaultScope.get_current_instance().scope_name
    samples = data_samples_for(model, scope, ph, pw)
    model.forward = partial(model.forward, data_samples=samples, mode='tensor')
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, inputs)
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = analyzer.total()
    # element-wise aten ops are ignored by design; custom (mmcv) ops are worth naming
    uncounted = {op.split('.')[-1]: n for op, n in analyzer.unsupported_ops().items()
                 if op.startswith('prim::PythonOp')}
    result = dict(params=parameter_count(model)[''], flops=flops, input_shape=(ph, pw),
                  uncounted=uncounted)
    if show_table:
        result['table'] = complexity_stats_table(flops=analyzer, max_depth=3,
                                                 show_param_shapes=False)
    return result


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.config):
        sys.exit(f'error: config file {args.config} not found (configs live under configs/).')
    h, w = input_hw(args.shape)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    logger = MMLogger.get_instance('get_flops', log_level='INFO')
    logger.info(f'building {args.config} and tracing one forward pass at {h}x{w} '
                '(a minute or more on CPU for a detector at 1280x800)...')
    start = time.time()
    result = complexity(cfg, h, w, show_table=args.show_table, mask_rois=args.mask_rois)
    if args.show_table:
        print(result['table'])
    line = '=' * 40
    uncounted = ', '.join(f'{op} x{n}' for op, n in sorted(result['uncounted'].items()))
    print(f'{line}\nConfig: {args.config}\nInput shape: {result["input_shape"]}'
          f'\nFlops: {result["flops"] / 1e9:.1f} G\nParams: {result["params"] / 1e6:.2f} M'
          f'\nNot counted (custom ops): {uncounted or "none"}'
          f'\nTime: {time.time() - start:.0f} s\n{line}')
    return result


if __name__ == '__main__':
    main()
