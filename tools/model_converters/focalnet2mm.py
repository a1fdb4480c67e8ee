# Copyright (c) focalnet-mm contributors. All rights reserved.
"""Convert timm / HF transformers / official FocalNet checkpoints into a clean official-layout
file for focalnet-mm (mmdet / mmseg / mmpretrain), named ``<out>-<sha256[:8]>.pth``.

Examples::

    # timm or HF weights -> official layout (``model`` wrapper), loadable by init_cfg Pretrained
    python tools/model_converters/focalnet2mm.py focalnet://huge_fl3 focalnet_huge_fl3.pth
    python tools/model_converters/focalnet2mm.py model.safetensors focalnet_tiny_srf.pth --verify
    python tools/model_converters/focalnet2mm.py hf_focalnet_tiny/ focalnet_tiny_srf.pth --verify
    # mmdet-style: ``state_dict`` with ``backbone.`` keys (classifier norm/head dropped)
    python tools/model_converters/focalnet2mm.py focalnet_tiny_srf.pth out.pth --prefix backbone.
    # mmpretrain ImageClassifier layout: backbone.* + backbone.norm3 + head.fc.*
    python tools/model_converters/focalnet2mm.py focalnet_tiny_srf.pth out.pth --prefix backbone. --keep-head
"""
import argparse
import hashlib
import logging
import os
import os.path as osp
import re
import sys
from collections import OrderedDict

import torch
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

try:
    import focalnet_mm  # noqa: F401  (compat fixes)
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    import focalnet_mm  # noqa: F401

from focalnet_mm import weights as W  # noqa: E402
from focalnet_mm.archs import ARCHS, TIMM_NAMES, resolve_arch  # noqa: E402

FLAG_KEYS = dict(use_postln='USE_POSTLN', normalize_modulator='NORMALIZE_MODULATOR',
                 use_postln_in_modulation='USE_POSTLN_IN_MODULATION', use_layerscale='USE_LAYERSCALE',
                 use_conv_embed='USE_CONV_EMBED', focal_levels='FOCAL_LEVELS',
                 focal_windows='FOCAL_WINDOWS', embed_dim='EMBED_DIM', depths='DEPTHS',
                 patch_size='PATCH_SIZE')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a FocalNet checkpoint (timm .pth/.safetensors, HF transformers '
        'pytorch_model.bin/model.safetensors or folder, official classification/detection, '
        'FocalNet-DINO, mmengine) into a clean official-layout file with a sha256-suffixed name.')
    parser.add_argument('src', help='source checkpoint: file, HF model folder, http(s) URL or focalnet://<preset>')
    parser.add_argument('dst', help='output file; written as <dst without .pth>-<sha256[:8]>.pth')
    parser.add_argument('--src-prefix', default=None,
                        help='take only source keys under this prefix (default: auto-detect '
                        '"backbone.0.body." / "backbone.", strip "module.")')
    parser.add_argument('--prefix', default=None,
                        help='write an mmengine-style file: {"state_dict": {PREFIX + key}}, e.g. '
                        '--prefix backbone. for mmdet/mmseg (default: official {"model": ...})')
    parser.add_argument('--keep-head', action='store_true',
                        help='with --prefix: keep the classifier as <prefix>norm{last} and head.fc.* '
                        '(mmpretrain ImageClassifier layout); without --prefix the official file '
                        'always keeps norm/head')
    parser.add_argument('--arch', choices=sorted(ARCHS), default=None,
                        help='the preset the weights were trained as: records its use_postln / '
                        'normalize_modulator (invisible in the keys) in the file\'s config, and is '
                        'checked against the tensors')
    parser.add_argument('--verify', action='store_true',
                        help='compare focalnet-mm outputs with the source library model (timm for '
                        'timm/official files, transformers for HF files) on a random image')
    parser.add_argument('--input-size', type=int, default=224,
                        help='image size used by --verify (default 224)')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest relative error accepted by --verify (default 1e-4)')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='read a source that holds pickled Python objects (e.g. a yacs config) '
                        'with full unpickling. This can run code: use only for files you trust. '
                        'The output holds tensors and plain containers only')
    parser.add_argument('--no-hash', action='store_true',
                        help='keep the output name as given (no sha256 suffix)')
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- reading
def plain(obj):
    """A yacs CfgNode / Namespace / anything -> plain dicts, lists and scalars (safe to reload)."""
    if isinstance(obj, argparse.Namespace):
        obj = vars(obj)
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def read_source(src, trust_pickle=False):
    if not trust_pickle:
        return W.read_checkpoint(src)
    path = W.local_checkpoint_file(src)  # focalnet://<preset>, URL or path
    if path.endswith('.safetensors'):
        return W.read_checkpoint(path)
    print_log(f'--trust-pickle: fully unpickling {path}; this can run code from the file.',
              logger='current', level=logging.WARNING)
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    if not isinstance(checkpoint, dict):
        return checkpoint
    # keep only what conversion reads: the tensors, and the config/args/meta as plain containers
    clean = {k: plain(checkpoint[k]) for k in ('config', 'args', 'meta') if k in checkpoint}
    wrapper = next((k for k in W.WRAPPER_KEYS if isinstance(checkpoint.get(k), dict)), None)
    weights = checkpoint[wrapper] if wrapper else checkpoint
    tensors = OrderedDict((k, v) for k, v in weights.items() if isinstance(v, torch.Tensor))
    if wrapper:
        clean[wrapper] = tensors
        return clean
    return tensors


# --------------------------------------------------------------------------- what to write
def training_config(converted, description, arch=None):
    """The MODEL.FOCAL block written into the file: shapes from the tensors, invisible flags only
    when the source (or --arch) states them."""
    declared = {k: v for k, v in converted.declared.items() if not k.startswith('_')}
    if arch is not None:
        preset = resolve_arch(arch)
        presets = W.match_presets(description)
        if arch not in presets:
            raise SystemExit(f'--arch {arch} does not match the tensors, which look like '
                             f'{presets or "no preset"}; drop --arch or pick one of those.')
        for flag in ('use_postln', 'normalize_modulator'):
            if flag in declared and bool(declared[flag]) != preset[flag]:
                raise SystemExit(f'--arch {arch} says {flag}={preset[flag]} but the source states '
                                 f'{flag}={declared[flag]} ({converted.declared["_source"]}); '
                                 'drop --arch.')
            declared.setdefault(flag, preset[flag])
    focal = {FLAG_KEYS[k]: v for k, v in declared.items() if k in FLAG_KEYS}
    for key in ('embed_dim', 'depths', 'patch_size', 'focal_levels', 'focal_windows',
                'use_conv_embed', 'use_layerscale', 'use_postln_in_modulation'):
        value = description[key]
        focal[FLAG_KEYS[key]] = list(value) if isinstance(value, (list, tuple)) else value
    return {'MODEL': {'FOCAL': focal}}


def build_output(converted, description, config, prefix=None, keep_head=False, source=''):
    """The checkpoint object to save (tensors copied to contiguous CPU memory, with a progress bar)."""
    state_dict = converted.state_dict
    last = len(description['depths']) - 1
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        backbone, head, norm = W.split_classifier(state_dict)
        out = OrderedDict((prefix + k, v) for k, v in backbone.items())
        if keep_head:
            out.update((f'{prefix}norm{last}' + k[len('norm'):], v) for k, v in norm.items())
            out.update(('head.fc.' + k[len('head.'):], v) for k, v in head.items())
        elif head or norm:
            print_log(f'dropped the classifier ({", ".join(list(norm) + list(head))}); use '
                      '--keep-head to keep it as norm{last} + head.fc', logger='current')
    else:
        out = OrderedDict(state_dict)
    progress = ProgressBar(len(out))
    tensors = OrderedDict()
    for key, value in out.items():
        tensors[key] = value.detach().to('cpu').contiguous().clone()
        progress.update()
    sys.stdout.write('\n')
    meta = dict(converted_by=W.CONVERTER, source=osp.basename(str(source)),
                source_format=converted.format, presets=W.match_presets(description, exact=True))
    if prefix:
        return dict(meta=meta, state_dict=tensors, config=config)
    return dict(model=tensors, config=config, meta=meta)


def save_with_hash(checkpoint, dst, add_hash=True):
    """Save, then rename to ``<name>-<sha256[:8]>.pth`` as OpenMMLab's publish_model does."""
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(checkpoint, dst)
    if not add_hash:
        return dst
    sha = hashlib.sha256()
    with open(dst, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            sha.update(chunk)
    stem = dst[:-4] if dst.endswith('.pth') else dst
    final = f'{stem}-{sha.hexdigest()[:8]}.pth'
    os.replace(dst, final)
    return final


# --------------------------------------------------------------------------- verification
def _relative_error(ours, ref):
    return ((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def run_capturing(model, x, modules, pick):
    """Run ``model(x)`` without grad; return ``pick(output)`` of each of ``modules``, in order."""
    maps = {}
    hooks = [module.register_forward_hook(
        lambda mod, inp, out, i=i: maps.__setitem__(i, pick(out)))
        for i, module in enumerate(modules)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return [maps[i] for i in sorted(maps)]


def focalnet_stage_maps(model, x):
    """Pre-downsample stage maps (NCHW) of a focalnet-mm FocalNet, before its norm{i}."""
    return run_capturing(model, x, model.layers, lambda out: out[0].permute(0, 3, 1, 2))


def model_kwargs(description, declared):
    return dict(embed_dim=description['embed_dim'], depths=tuple(description['depths']),
                focal_levels=list(description['focal_levels']),
                focal_windows=list(description['focal_windows']),
                use_conv_embed=description['use_conv_embed'],
                use_layerscale=description['use_layerscale'],
                use_postln_in_modulation=description['use_postln_in_modulation'],
                use_postln=bool(declared.get('use_postln', False)),
                normalize_modulator=bool(declared.get('normalize_modulator', False)))


def timm_reference(raw, converted, description, kw):
    try:
        from timm.models.focalnet import FocalNet as TimmFocalNet
        from timm.models.focalnet import checkpoint_filter_fn
    except ImportError:
        raise SystemExit('--verify needs timm for timm/official checkpoints: pip install timm '
                         '(or drop --verify).') from None
    model = TimmFocalNet(
        embed_dim=kw['embed_dim'], depths=kw['depths'], focal_levels=kw['focal_levels'],
        focal_windows=kw['focal_windows'], use_overlap_down=kw['use_conv_embed'],
        use_post_norm=kw['use_postln'], use_post_norm_in_modulation=kw['use_postln_in_modulation'],
        normalize_modulator=kw['normalize_modulator'],
        layerscale_value=1e-4 if kw['use_layerscale'] else None,
        num_classes=description['num_classes'] or 0, drop_path_rate=0.).eval()
    if converted.format == 'timm':
        source = dict(raw)
    else:  # timm's own filter maps official keys to timm's (output norms norm{i} are not timm's)
        official = OrderedDict((k, v) for k, v in converted.state_dict.items()
                               if not re.match(r'^norm\d+\.', k))
        source = checkpoint_filter_fn(official, model)
    if not description['num_classes']:
        source = {k: v for k, v in source.items() if not k.startswith('head.')}
    result = model.load_state_dict(source, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(('norm.', 'head.'))]
    if missing or result.unexpected_keys:
        raise SystemExit(f'--verify could not build the timm model from the file: missing {missing[:3]}, '
                         f'unexpected {result.unexpected_keys[:3]}.')
    return lambda x: model.forward_intermediates(x, intermediates_only=True)


def hf_reference(raw, converted, description, kw, hf_config):
    try:
        from transformers import FocalNetConfig, FocalNetForImageClassification, FocalNetModel
    except ImportError:
        raise SystemExit('--verify needs transformers for HF checkpoints: pip install transformers '
                         '(or drop --verify).') from None
    params = dict(embed_dim=kw['embed_dim'], depths=list(kw['depths']),
                  focal_levels=kw['focal_levels'], focal_windows=kw['focal_windows'],
                  use_conv_embed=kw['use_conv_embed'], use_layerscale=kw['use_layerscale'],
                  use_post_layernorm=kw['use_postln'],
                  use_post_layernorm_in_modulation=kw['use_postln_in_modulation'],
                  normalize_modulator=kw['normalize_modulator'], drop_path_rate=0.)
    if hf_config:
        params.update({k: v for k, v in hf_config.items() if k in ('layer_norm_eps', 'layerscale_value')})
    with_head = any(k.startswith('classifier.') for k in raw)
    if with_head:
        params['num_labels'] = raw['classifier.weight'].shape[0]
    config = FocalNetConfig(**params)
    model = (FocalNetForImageClassification if with_head else FocalNetModel)(config).eval()
    source = {k: v for k, v in raw.items() if not W.is_hf_extra_key(k)}
    if not with_head:  # FocalNetModel keys have no 'focalnet.' prefix
        source = {k[len('focalnet.'):] if k.startswith('focalnet.') else k: v for k, v in source.items()}
    model.load_state_dict(source, strict=True)
    encoder = model.focalnet.encoder if with_head else model.encoder

    def run(x):
        # each HF stage returns (downsampled, pre-downsample) hidden states: keep the latter
        maps = run_capturing(model, x, encoder.stages, lambda out: out[1])
        outs, size = [], (-(-x.shape[2] // 4), -(-x.shape[3] // 4))
        for hidden in maps:
            b, n, c = hidden.shape
            h, w = size
            outs.append(hidden.transpose(1, 2).reshape(b, c, h, w))
            size = (-(-h // 2), -(-w // 2))
        return outs
    return run


def verify(raw, converted, out_file, description, hf_config, input_size, tolerance):
    """Load ``out_file`` with focalnet-mm and compare stage outputs with the source library."""
    from focalnet_mm import FocalNet
    kw = model_kwargs(description, converted.declared)
    if converted.format == 'hf':
        reference = hf_reference(raw, converted, description, kw, hf_config)
    else:
        reference = timm_reference(raw, converted, description, kw)
    ours = FocalNet(arch=kw, drop_path_rate=0., out_indices=tuple(range(len(kw['depths'])))).eval()
    W.load_pretrained(ours, out_file)
    torch.manual_seed(0)
    x = torch.randn(1, 3, input_size, input_size)
    with torch.no_grad():
        refs = reference(x)
    errors = [_relative_error(a, b) for a, b in zip(focalnet_stage_maps(ours, x), refs)]
    lib = 'transformers' if converted.format == 'hf' else 'timm'
    print_log(f'--verify against {lib}: stage relative errors '
              f'{", ".join(f"{e:.2e}" for e in errors)} (tolerance {tolerance:g})', logger='current')
    if max(errors) > tolerance:
        raise SystemExit(f'--verify failed: max relative error {max(errors):.2e} > {tolerance:g}; '
                         'the converted weights do not reproduce the source model.')
    return errors


# --------------------------------------------------------------------------- main
def convert(args):
    """Returns (output file, per-stage --verify relative errors or None)."""
    hf_config = W.read_sidecar_config(args.src)
    raw_checkpoint = read_source(args.src, trust_pickle=args.trust_pickle)
    converted = W.convert_checkpoint(raw_checkpoint, prefix=args.src_prefix, hf_config=hf_config)
    raw_tensors, _ = W.unwrap_checkpoint(raw_checkpoint)
    raw_tensors, _, _ = W.select_prefix(raw_tensors, args.src_prefix)
    description = W.describe_state_dict(converted.state_dict)
    config = training_config(converted, description, args.arch)
    if args.arch:  # record the preset's invisible flags for the loader and --verify
        preset = resolve_arch(args.arch)
        converted.declared.setdefault('use_postln', preset['use_postln'])
        converted.declared.setdefault('normalize_modulator', preset['normalize_modulator'])
    for reason, keys in converted.dropped.items():
        print_log(f'dropped {len(keys)} source keys ({reason}), e.g. {keys[:3]}', logger='current')
    checkpoint = build_output(converted, description, config, args.prefix, args.keep_head, args.src)
    out_file = save_with_hash(checkpoint, args.dst, add_hash=not args.no_hash)
    presets = W.match_presets(description, exact=True)
    print_log(f'{args.src} ({converted.format}) -> {out_file}: {len(converted.state_dict)} tensors'
              + (f'; matches arch={presets[0]!r}' if presets else '')
              + (f'; timm name {TIMM_NAMES[presets[0]]}' if presets and presets[0] in TIMM_NAMES
                 else ''), logger='current')
    errors = None
    if args.verify:
        errors = verify(raw_tensors, converted, out_file, description, hf_config, args.input_size,
                        args.tolerance)
    return out_file, errors


def main(argv=None):
    args = parse_args(argv)
    if args.keep_head and not args.prefix:
        raise SystemExit('--keep-head only applies with --prefix (the official layout always keeps '
                         'norm/head).')
    try:
        return convert(args)[0]
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f'{type(e).__name__}: {e}') from None


if __name__ == '__main__':
    main()
