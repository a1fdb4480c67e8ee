"""See what focal modulation looks at: gate maps and modulator magnitude of one FocalNet block.

    python tools/analysis_tools/visualize_modulation.py CONFIG [CHECKPOINT] \
        --images IMG_OR_DIR [...] --out DIR [--stage 2 --block -1 --short-side 512]

Works with detection, segmentation and classification configs (the FocalNet is
``model.backbone``). Writes ``<image>.png`` per image (the input, each gate map and the
modulator magnitude overlaid as heat maps) and ``contact_sheet.png`` when there are several
images. Without CHECKPOINT the model is randomly initialized, and every figure says so.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, init_default_scope

import focalnet_mm  # noqa: F401  (compat fixes, FocalNet registration)
from focalnet_mm.visualization import find_focalnet, list_images, render_modulation, resolve_block
from focalnet_mm.weights import load_model_weights


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw the gate maps and modulator magnitude of one FocalNet block.')
    parser.add_argument('config', help='detection, segmentation or classification config file')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='weights (mmengine checkpoint; official/timm/HF files when '
                             'focalnet_mm.weights supports them); omit for random init')
    parser.add_argument('--images', nargs='+', required=True, help='image files and/or folders')
    parser.add_argument('--out', required=True, help='output folder for the PNGs')
    parser.add_argument('--stage', type=int, default=None,
                        help='stage index (default: 2, stride 16; the last stage of shallower '
                             'models)')
    parser.add_argument('--block', type=int, default=-1,
                        help='block index within the stage (default: -1, the last block)')
    parser.add_argument('--short-side', type=int, default=512,
                        help='resize images so the short side has this many pixels; 0 keeps '
                             'the size')
    parser.add_argument('--device', default='cpu', help='torch device, e.g. cpu or cuda:0')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the random init (the same figures on every run '
                             'without CHECKPOINT)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. model.backbone.focal_levels=3')
    args = parser.parse_args(argv)
    if args.short_side < 0:
        parser.error('--short-side must be >= 0 (0 keeps the image size).')
    return args


def build_model(config: str, cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """The config's model, in its library's registry scope, with no weights loaded."""
    if not osp.isfile(config):
        raise FileNotFoundError(f'Config file {config} not found; configs live under configs/.')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise KeyError(f'{config} has no "model" entry; pass a detection/segmentation/'
                       'classification config.')
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model_cfg = cfg.model.copy()
    # weights come from CHECKPOINT (or nowhere); never fetch the config's init_cfg pretrained URL
    model_cfg.get('backbone', {}).pop('init_cfg', None)
    return MODELS.build(model_cfg)


def load_weights(model: torch.nn.Module, checkpoint: str) -> None:
    """Whole-model mmengine checkpoints and backbone files (official, timm, HF) alike."""
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'Checkpoint {checkpoint} not found; pass an existing file or '
                                'omit CHECKPOINT for random init.')
    load_model_weights(model, checkpoint)


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    """Runs the tool; returns the paths of the written PNGs (per image, then the contact sheet)."""
    args = parse_args(argv)
    try:
        image_paths = list_images(args.images)
    except FileNotFoundError as error:
        raise FileNotFoundError(f'--images: {error}') from None
    torch.manual_seed(args.seed)
    model = build_model(args.config, args.cfg_options)
    try:
        resolve_block(find_focalnet(model), args.stage, args.block)
    except ValueError as error:  # the library names its arguments (stage=7), we name our flags
        raise ValueError(str(error).replace('stage=', '--stage ').replace('block=', '--block ')) \
            from None
    if args.checkpoint:
        load_weights(model, args.checkpoint)
        weights_label = osp.basename(args.checkpoint)
    else:
        weights_label = 'random init'
    model.to(args.device).eval()
    rendered = render_modulation(model, image_paths, args.out, stage=args.stage, block=args.block,
                                 short_side=args.short_side or None, weights=weights_label,
                                 progress=True)
    written = [item.path for item in rendered]
    sheet = osp.join(args.out, 'contact_sheet.png')
    if len(rendered) > 1:
        written.append(sheet)
    print(f'{len(written)} figure(s) written to {args.out}'
          + ('' if len(rendered) > 1 else ' (no contact_sheet.png: it needs two or more images)'))
    return written


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, ValueError, TypeError, KeyError) as error:
        sys.exit(f'error: {error}')
