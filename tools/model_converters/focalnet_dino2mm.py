# Copyright (c) focalnet-mm contributors. All rights reserved.
"""Convert a FocalNet-DINO checkpoint (microsoft/FocalNet-DINO, IDEA-Research DINO code) into an
mmdet 3.x DINO checkpoint for one of our configs, so ``tools/test.py CONFIG OUT.pth`` evaluates it.

    python tools/model_converters/focalnet_dino2mm.py focalnet_large_fl4_o365_finetuned_on_coco.pth \\
        dino_focalnet_l_fl4_o365_coco.pth --config configs/det/dino_focalnet_l_fl4_5scale_o365_coco.py

Every source tensor is mapped to an mmdet key or dropped with a reason (``--report`` writes the
whole map as TSV; the log gives the counts); every tensor of the config's model must be produced
with its exact shape, and the result is loaded strictly into the model built from the config
(on the meta device: no memory for the weights). The backbone part goes through the same
checks as our backbone loader (focalnet_mm.weights: embed/depths/levels/windows/conv-embed/
layer-scale/modulation-ln from the tensors, use_postln / normalize_modulator from the DINO
``args.backbone`` name in the file): a config whose FocalNet flags do not fit is refused in one
line that names the flag.

Layout (IDEA-Research DINO, models/dino/{dino,deformable_transformer,backbone}.py):
``backbone.0.*`` is the FocalNet (Joiner[0]); ``input_proj.{i}`` conv+GroupNorm per level (the
extra levels are 3x3 stride-2 convs); the transformer's encoder/decoder layers; shared
``class_embed`` / ``bbox_embed`` per decoder layer (stored twice: top level and
``transformer.decoder``); ``transformer.enc_out_*`` the two-stage proposal head. Classes are the
91 COCO category ids; mmdet's are the 80 contiguous labels.
"""
import argparse
import copy
import os.path as osp
import re
import sys
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from mmengine.logging import print_log  # noqa: E402

import focalnet_mm  # noqa: E402,F401  (compat fixes + registration)
from focalnet_mm import weights as W  # noqa: E402

#: the 80 COCO category ids in mmdet's label order (DINO predicts the 91 raw ids)
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90)

#: FocalNet-DINO backbone names (args.backbone) -> the flags its build_focalnet gives them that
#: the weights cannot show (models/dino/focal.py)
DINO_BACKBONES = {
    'focalnet_L_384_22k': dict(use_postln=True, normalize_modulator=False),
    'focalnet_L_384_22k_fl4': dict(use_postln=True, normalize_modulator=True),
    'focalnet_XL_384_22k': dict(use_postln=True, normalize_modulator=False),
    'focalnet_XL_384_22k_fl4': dict(use_postln=True, normalize_modulator=True),
    'focalnet_H_224_22k': dict(use_postln=True, normalize_modulator=False),
    'focalnet_H_224_22k_fl4': dict(use_postln=True, normalize_modulator=False),
}

BACKBONE_PREFIX = 'backbone.0.'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a FocalNet-DINO (IDEA-Research DINO layout) checkpoint to the mmdet '
        'DINO model of a focalnet-mm config; the output is named <dst>-<sha256[:8]>.pth')
    parser.add_argument('src', help='FocalNet-DINO checkpoint (.pth with a "model" dict)')
    parser.add_argument('dst', help='output file (mmengine checkpoint: state_dict + meta)')
    parser.add_argument('--config', required=True,
                        help='the focalnet-mm DINO config the weights are for, e.g. '
                        'configs/det/dino_focalnet_l_fl4_5scale_o365_coco.py')
    parser.add_argument('--report', default=None,
                        help='write the key map, one source key per line (TSV: source key, '
                        'shape, mmdet key or "-", what happened), to this file')
    parser.add_argument('--no-hash', action='store_true',
                        help='keep the output name as given (no sha256 suffix)')
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- the key map
def _select_classes(value: torch.Tensor) -> torch.Tensor:
    """Rows of the 91 category ids (92 for the denoising label book) -> the 80 mmdet labels."""
    if value.shape[0] not in (91, 92):
        raise ValueError(f'A class tensor of the file has {value.shape[0]} rows; the converter maps '
                         'the COCO category ids of DINO (91 classes, 92 denoising labels) to '
                         "mmdet's 80 labels: the file is not a COCO-trained DINO.")
    return value.index_select(0, torch.tensor(COCO_CATEGORY_IDS)).contiguous()


class KeyMap:
    """Rename rules from the DINO layout to mmdet's DINO, for a model with ``num_backbone_outs``
    backbone levels and ``num_decoder_layers`` decoder layers (rule order matters)."""

    def __init__(self, num_backbone_outs: int, num_decoder_layers: int):
        n, d = num_backbone_outs, num_decoder_layers

        def proj(m):
            i, kind, param = int(m.group(1)), m.group(2), m.group(3)
            where = f'convs.{i}' if i < n else f'extra_convs.{i - n}'
            return f'neck.{where}.{"conv" if kind == "0" else "gn"}.{param}'

        def reg(layer):  # DINO MLP layers 0/1/2 -> mmdet reg branch Linear indices 0/2/4
            return lambda m: f'bbox_head.reg_branches.{layer(m)}.{2 * int(m.group(2))}.{m.group(3)}'

        t, enc, dec = r'^transformer\.', r'^transformer\.encoder\.layers\.(\d+)\.', \
            r'^transformer\.decoder\.layers\.(\d+)\.'
        # (pattern, mmdet key or function of the match, value transform or None, note)
        self.rules: List[Tuple[re.Pattern, object, Optional[Callable], str]] = [
            (t + r'level_embed$', 'level_embed', None, ''),
            (t + r'tgt_embed\.weight$', 'query_embedding.weight', None, ''),
            (t + r'enc_output\.(weight|bias)$', r'memory_trans_fc.\1', None, ''),
            (t + r'enc_output_norm\.(weight|bias)$', r'memory_trans_norm.\1', None, ''),
            (enc + r'self_attn\.(\w+)\.(weight|bias)$', r'encoder.layers.\1.self_attn.\2.\3', None, ''),
            (enc + r'linear1\.(weight|bias)$', r'encoder.layers.\1.ffn.layers.0.0.\2', None, ''),
            (enc + r'linear2\.(weight|bias)$', r'encoder.layers.\1.ffn.layers.1.\2', None, ''),
            (enc + r'norm1\.(weight|bias)$', r'encoder.layers.\1.norms.0.\2', None,
             'after self-attention'),
            (enc + r'norm2\.(weight|bias)$', r'encoder.layers.\1.norms.1.\2', None, 'after FFN'),
            (dec + r'self_attn\.(in_proj_weight|in_proj_bias)$', r'decoder.layers.\1.self_attn.attn.\2',
             None, ''),
            (dec + r'self_attn\.out_proj\.(weight|bias)$', r'decoder.layers.\1.self_attn.attn.out_proj.\2',
             None, ''),
            (dec + r'cross_attn\.(\w+)\.(weight|bias)$', r'decoder.layers.\1.cross_attn.\2.\3', None, ''),
            (dec + r'linear1\.(weight|bias)$', r'decoder.layers.\1.ffn.layers.0.0.\2', None, ''),
            (dec + r'linear2\.(weight|bias)$', r'decoder.layers.\1.ffn.layers.1.\2', None, ''),
            # DINO runs self-attention (norm2), cross-attention (norm1), FFN (norm3)
            (dec + r'norm2\.(weight|bias)$', r'decoder.layers.\1.norms.0.\2', None,
             'after self-attention'),
            (dec + r'norm1\.(weight|bias)$', r'decoder.layers.\1.norms.1.\2', None,
             'after cross-attention'),
            (dec + r'norm3\.(weight|bias)$', r'decoder.layers.\1.norms.2.\2', None, 'after FFN'),
            (t + r'decoder\.ref_point_head\.layers\.(\d+)\.(weight|bias)$',
             r'decoder.ref_point_head.layers.\1.\2', None, ''),
            (t + r'decoder\.norm\.(weight|bias)$', r'decoder.norm.\1', None, ''),
            (t + r'decoder\.bbox_embed\.(\d+)\.layers\.(\d)\.(weight|bias)$',
             reg(lambda m: m.group(1)), None, 'decoder layer box head'),
            (t + r'enc_out_bbox_embed\.layers\.()(\d)\.(weight|bias)$', reg(lambda m: d), None,
             'two-stage proposal box head'),
            (t + r'enc_out_class_embed\.(weight|bias)$', rf'bbox_head.cls_branches.{d}.\1',
             _select_classes, 'two-stage proposal classifier; 91 category ids -> 80 labels'),
            (r'^class_embed\.(\d+)\.(weight|bias)$', r'bbox_head.cls_branches.\1.\2', _select_classes,
             'decoder layer classifier; 91 category ids -> 80 labels'),
            (r'^label_enc\.weight$', 'dn_query_generator.label_embedding.weight', _select_classes,
             'denoising label embedding; 92 label-book rows -> 80 labels'),
            (r'^input_proj\.(\d+)\.([01])\.(weight|bias)$', proj, None,
             'input projection (conv 0, GroupNorm 1) -> ChannelMapper'),
        ]
        self.rules = [(re.compile(p), dst, fn, note) for p, dst, fn, note in self.rules]
        # the same modules stored a second time (DINO assigns one ModuleList to both places)
        self.duplicates = [
            (re.compile(r'^bbox_embed\.(\d+)\.(.*)$'), r'transformer.decoder.bbox_embed.\1.\2'),
            (re.compile(r'^transformer\.decoder\.class_embed\.(\d+)\.(.*)$'), r'class_embed.\1.\2'),
        ]

    def target(self, key: str):
        """(mmdet key, value transform, note) of a non-backbone source key, or None."""
        for pattern, dst, fn, note in self.rules:
            m = pattern.match(key)
            if m:
                return (dst(m) if callable(dst) else m.expand(dst)), fn, note
        return None

    def duplicate_of(self, key: str) -> Optional[str]:
        for pattern, original in self.duplicates:
            m = pattern.match(key)
            if m:
                return m.expand(original)
        return None


# --------------------------------------------------------------------------- conversion
def build_meta_model(config):
    """The mmdet model of ``config`` (path or Config) on the meta device, with its config."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    with torch.device('meta'):
        model = MODELS.build(copy.deepcopy(cfg.model))  # build() fills in the head's config
    return cfg, model


def dino_declared_flags(checkpoint) -> dict:
    """use_postln / normalize_modulator the file's DINO ``args.backbone`` stands for."""
    args = checkpoint.get('args') if isinstance(checkpoint, dict) else None
    name = args.get('backbone') if isinstance(args, dict) else getattr(args, 'backbone', None)
    if name is None:
        return {}
    if name not in DINO_BACKBONES:
        raise ValueError(f'The file was trained with DINO backbone {name!r}, not a FocalNet one '
                         f'({", ".join(sorted(DINO_BACKBONES))}).')
    return dict(DINO_BACKBONES[name], _source=f"its DINO args (backbone={name!r})")


def convert(checkpoint, model, num_decoder_layers: int):
    """FocalNet-DINO checkpoint object -> (mmdet state dict, report rows).

    Report rows are (source key, shape, mmdet key or '-', what happened). Raises ValueError on
    any tensor that cannot be placed and on any model tensor left without a value.
    """
    tensors, _ = W.unwrap_checkpoint(checkpoint)
    tensors = OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v)
                          for k, v in tensors.items())
    if not any(k.startswith(BACKBONE_PREFIX) for k in tensors) or 'transformer.tgt_embed.weight' \
            not in tensors:
        raise ValueError('Not a FocalNet-DINO checkpoint: expected backbone.0.* (FocalNet) and '
                         'transformer.* (DINO) keys under "model"; first keys: '
                         f'{list(tensors)[:4]}.')
    rows: List[Tuple[str, tuple, str, str]] = []
    out = OrderedDict()

    # the backbone: our loader's conversion, refusals and strict key accounting
    converted = W.convert_checkpoint({'model': {k: v for k, v in tensors.items()
                                                if k.startswith(BACKBONE_PREFIX)}},
                                     prefix=BACKBONE_PREFIX)
    converted.declared.update(dino_declared_flags(checkpoint))
    backbone_sd, report = W.adapt_to_backbone(converted, model.backbone,
                                              W.LoadReport(source='<FocalNet-DINO backbone>'))
    if report.expanded or report.resized:  # fine for ImageNet weights, not for a trained detector
        d = W.describe_state_dict(converted.state_dict)
        raise ValueError(f'The file\'s backbone has focal_levels={d["focal_levels"]}, '
                         f'focal_windows={d["focal_windows"]} but the config\'s has '
                         f'{list(model.backbone.focal_levels)} / {list(model.backbone.focal_windows)}: '
                         'a trained detector is converted as it is; use the config of its levels '
                         '(fl3 / fl4) or set focal_levels / focal_windows on the backbone.')
    if report.missing_expected:
        norms = sorted({k.split('.')[0] for k in report.missing_expected})
        raise ValueError(f'The file has no backbone output norms {norms}: it was trained with fewer '
                         'backbone levels than the config returns (out_indices); use the 4-scale '
                         'config for a 4-scale file.')
    for reason, keys in report.dropped.items():
        rows += [(BACKBONE_PREFIX + k, tuple(tensors[BACKBONE_PREFIX + k].shape), '-',
                  f'dropped: {reason}') for k in keys if BACKBONE_PREFIX + k in tensors]
    for key, value in backbone_sd.items():
        out['backbone.' + key] = value
        rows.append((BACKBONE_PREFIX + key, tuple(tensors[BACKBONE_PREFIX + key].shape),
                     'backbone.' + key, 'FocalNet backbone'))
    warnings = list(report.warnings)

    num_backbone_outs = len(model.backbone.out_indices)
    keymap = KeyMap(num_backbone_outs, num_decoder_layers)
    unknown = []
    for key, value in tensors.items():
        if key.startswith(BACKBONE_PREFIX):
            continue
        original = keymap.duplicate_of(key)
        if original is not None:
            if original not in tensors or not torch.equal(tensors[original], value):
                raise ValueError(f'{key} should be the same tensor as {original} (DINO shares the '
                                 'decoder prediction heads) but is not: the file is not in the '
                                 'FocalNet-DINO layout this converter knows.')
            rows.append((key, tuple(value.shape), '-', f'dropped: same module as {original}'))
            continue
        found = keymap.target(key)
        if found is None:
            unknown.append(key)
            continue
        dst, fn, note = found
        out[dst] = fn(value) if fn is not None else value
        rows.append((key, tuple(value.shape), dst, note or 'renamed'))
    if unknown:
        raise ValueError(f'{len(unknown)} tensors of the file have no place in mmdet\'s DINO (e.g. '
                         f'{unknown[:3]}): the file was trained with DINO options these configs do '
                         'not have.')
    check_fits(out, model)
    return out, rows, warnings


def check_fits(state_dict, model) -> None:
    """Every model tensor produced, none extra, shapes equal; then a strict load (meta device)."""
    target = OrderedDict((k, tuple(v.shape)) for k, v in model.state_dict().items())
    missing = [k for k in target if k not in state_dict]
    extra = [k for k in state_dict if k not in target]
    shapes = [(k, tuple(v.shape), target[k]) for k, v in state_dict.items()
              if k in target and tuple(v.shape) != target[k]]
    if shapes:
        key, theirs, ours = shapes[0]
        hint = ''
        if key == 'level_embed':
            hint = f': the file has {theirs[0]} feature levels, use a {theirs[0]}-scale config'
        elif key.startswith('neck.'):
            hint = ': the file\'s backbone levels differ from the config\'s out_indices / neck'
        elif key == 'query_embedding.weight':
            hint = f': set model.num_queries={theirs[0]}'
        raise ValueError(f'{len(shapes)} converted tensors do not fit the config\'s model (first: '
                         f'{key} {list(theirs)} in the file, {list(ours)} in the model){hint}.')
    if missing or extra:
        raise ValueError(f'The converted file does not cover the model: {len(missing)} model tensors '
                         f'missing (e.g. {missing[:3]}), {len(extra)} extra (e.g. {extra[:3]}); the '
                         'file was trained with another number of layers/levels than the config.')
    meta = any(t.is_meta for t in model.state_dict().values())
    # a meta model: a copy of it takes the tensors themselves (copying into meta tensors is a
    # no-op that torch warns about once per tensor); keys and shapes are checked either way
    (copy.deepcopy(model) if meta else model).load_state_dict(state_dict, strict=True, assign=meta)


def write_report(rows, path) -> None:
    with open(path, 'w') as f:
        f.write('source key\tshape\tmmdet key\twhat\n')
        for key, shape, dst, what in rows:
            f.write(f'{key}\t{list(shape)}\t{dst}\t{what}\n')


def summarize(rows) -> str:
    mapped = [r for r in rows if r[2] != '-']
    dropped: Dict[str, int] = {}
    for r in rows:
        if r[2] == '-':
            dropped[r[3]] = dropped.get(r[3], 0) + 1
    parts = [f'{len(rows)} source tensors: {len(mapped)} mapped '
             f'({sum(r[2].startswith("backbone.") for r in mapped)} backbone, '
             f'{sum(not r[2].startswith("backbone.") for r in mapped)} DINO)']
    parts += [f'{n} {what}' for what, n in sorted(dropped.items())]
    return '; '.join(parts)


def main(argv=None):
    args = parse_args(argv)
    from focalnet2mm import save_with_hash  # the sibling converter's OpenMMLab-style naming
    try:
        checkpoint = W.read_checkpoint(args.src)
        cfg, model = build_meta_model(args.config)
        state_dict, rows, warnings = convert(checkpoint, model, cfg.model.decoder.num_layers)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f'{type(e).__name__}: {e}') from None
    for warning in warnings:
        print_log(f'WARNING: {warning}', logger='current')
    print_log(summarize(rows), logger='current')
    if args.report:
        write_report(rows, args.report)
        print_log(f'key map written to {args.report}', logger='current')
    meta = dict(converted_by='tools/model_converters/focalnet_dino2mm.py',
                source=osp.basename(args.src), config=osp.basename(args.config))
    out = dict(meta=meta, state_dict=OrderedDict((k, v.detach().cpu().contiguous().clone())
                                                 for k, v in state_dict.items()))
    out_file = save_with_hash(out, args.dst, add_hash=not args.no_hash)
    print_log(f'{args.src} -> {out_file}: {len(state_dict)} tensors, loaded strictly into the '
              f'model of {args.config}', logger='current')
    return out_file


if __name__ == '__main__':
    main()
