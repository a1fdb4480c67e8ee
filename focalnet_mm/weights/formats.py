"""Checkpoint formats -> the official FocalNet layout, and what a file says about itself.

Pure functions on state dicts: unwrap, prefix selection, format detection, timm / HF -> official,
the tensors' sizes, levels and flags, and the file's declared training flags.
"""
import argparse
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from ..archs import ARCHS, resolve_arch

FORMATS = ('official', 'timm', 'hf')
WRAPPER_KEYS = ('state_dict', 'model', 'module')
#: prefixes tried, in order, when the caller gives none: DETR-family Joiner around an
#: IntermediateLayerGetter ('backbone.0.body.'), FocalNet-DINO's Joiner around the FocalNet itself
#: ('backbone.0.', models/dino/backbone.py), mmdet / mmseg / mmpretrain ('backbone.')
AUTO_PREFIXES = ('backbone.0.body.', 'backbone.0.', 'backbone.')

_OUT_NORM_RE = re.compile(r'^norm(\d+)\.')


# --------------------------------------------------------------------------- unwrapping & formats
def unwrap_checkpoint(checkpoint) -> Tuple[Dict[str, torch.Tensor], dict]:
    """The tensor dict inside a checkpoint and what surrounded it (wrapper, config, meta)."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f'A FocalNet checkpoint must be a dict of tensors or a dict wrapping one, '
                         f'not {type(checkpoint).__name__}.')
    info = dict(wrapper=None, config=None, meta=None, skipped=[])
    state_dict = checkpoint
    for key in WRAPPER_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            state_dict, info['wrapper'] = checkpoint[key], key
            break
    if info['wrapper'] is not None:
        info['config'] = checkpoint.get('config', checkpoint.get('args'))
        info['meta'] = checkpoint.get('meta')
    tensors = OrderedDict()
    for k, v in state_dict.items():
        if isinstance(v, torch.Tensor):
            tensors[k] = v
        else:
            info['skipped'].append(k)
    if not tensors:
        raise ValueError(f'No tensors found in the checkpoint (top-level keys: {sorted(checkpoint)[:8]}); '
                         f'expected raw weights or a {"/".join(WRAPPER_KEYS)} wrapper.')
    return tensors, info


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str):
    """Keys under ``prefix`` with it removed, and the keys left out."""
    kept = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))
    return kept, [k for k in state_dict if not k.startswith(prefix)]


def strip_ddp_prefix(state_dict: Mapping[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Keys without the ``module.`` that DistributedDataParallel puts in front of every name."""
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v)
                       for k, v in state_dict.items())


def select_prefix(state_dict: Mapping[str, torch.Tensor], prefix: Optional[str] = None):
    """Drop ``module.`` (DDP), then keep the backbone's keys: returns (state_dict, prefix, dropped).

    ``prefix`` follows mmengine's ``Pretrained(prefix=...)``; without it, :data:`AUTO_PREFIXES`
    (FocalNet-DINO's ``backbone.0.``, mmdet/mmseg/mmpretrain's ``backbone.``) are recognised.
    """
    state_dict = strip_ddp_prefix(state_dict)
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        kept, dropped = strip_prefix(state_dict, prefix)
        if not kept:
            tops = sorted({k.split('.')[0] + '.' for k in state_dict})[:8]
            raise ValueError(f'No checkpoint key starts with prefix={prefix!r} (its keys start with '
                             f'{tops}); fix init_cfg prefix or leave it unset for auto-detection.')
        return kept, prefix, dropped
    for candidate in AUTO_PREFIXES:
        if any(k.startswith(candidate) for k in state_dict):
            kept, dropped = strip_prefix(state_dict, candidate)
            return kept, candidate, dropped
    return state_dict, '', []


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """'official' (also det/seg/DINO backbones and mmengine), 'timm' or 'hf' (transformers)."""
    if 'stem.proj.weight' in state_dict:
        return 'timm'
    if any(k.startswith(('embeddings.patch_embeddings.', 'focalnet.embeddings.')) for k in state_dict):
        return 'hf'
    if 'patch_embed.proj.weight' in state_dict:
        return 'official'
    raise ValueError(
        f'Not a FocalNet checkpoint: none of patch_embed.proj.weight (official), stem.proj.weight '
        f'(timm) or embeddings.patch_embeddings.projection.weight (HF) found; first keys: '
        f'{list(state_dict)[:5]}. For a whole-model file set the backbone prefix, e.g. '
        'init_cfg=dict(type="Pretrained", checkpoint=..., prefix="backbone.").')


_TIMM_RENAMES = [
    (re.compile(r'^stem\.'), 'patch_embed.'),
    (re.compile(r'\.ls([12])\.gamma$'), r'.gamma_\1'),
    (re.compile(r'\.norm([12])_post\.'), r'.norm\1.'),
    (re.compile(r'\.modulation\.norm\.'), '.modulation.ln.'),
    (re.compile(r'^head\.fc\.'), 'head.'),
]
_LINEAR_AS_CONV_RE = re.compile(r'\.(modulation\.f|modulation\.proj|mlp\.fc1|mlp\.fc2)\.weight$')


def timm_to_official(state_dict: Mapping[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """timm keys -> official keys; timm's 1x1 convs (f, proj, fc1, fc2) back to Linear weights.

    timm puts each downsample at the start of the next stage: ``layers.{i}.downsample`` is the
    official ``layers.{i-1}.downsample``.
    """
    out = OrderedDict()
    for key, value in state_dict.items():
        new = key
        for pattern, repl in _TIMM_RENAMES:
            new = pattern.sub(repl, new)
        new = re.sub(r'^layers\.(\d+)\.downsample\.',
                     lambda m: f'layers.{int(m.group(1)) - 1}.downsample.', new)
        if _LINEAR_AS_CONV_RE.search(new) and value.dim() == 4:
            value = value.flatten(1)
        out[new] = value
    return out


_HF_RENAMES = [
    (re.compile(r'^embeddings\.patch_embeddings\.projection\.'), 'patch_embed.proj.'),
    (re.compile(r'^embeddings\.norm\.'), 'patch_embed.norm.'),
    (re.compile(r'^encoder\.stages\.(\d+)\.layers\.(\d+)\.'), r'layers.\1.blocks.\2.'),
    (re.compile(r'^encoder\.stages\.(\d+)\.downsample\.projection\.'), r'layers.\1.downsample.proj.'),
    (re.compile(r'^encoder\.stages\.(\d+)\.downsample\.norm\.'), r'layers.\1.downsample.norm.'),
    (re.compile(r'\.modulation\.projection_in\.'), '.modulation.f.'),
    (re.compile(r'\.modulation\.projection_context\.'), '.modulation.h.'),
    (re.compile(r'\.modulation\.projection_out\.'), '.modulation.proj.'),
    (re.compile(r'\.modulation\.layernorm\.'), '.modulation.ln.'),
    (re.compile(r'^layernorm\.'), 'norm.'),
    (re.compile(r'^classifier\.'), 'head.'),
]
#: HF keys that belong to no backbone (masked-image-modelling token and decoder)
_HF_EXTRA_RE = re.compile(r'^(embeddings\.mask_token|decoder\.)')


def is_hf_extra_key(key: str) -> bool:
    """An HF key of no backbone (the masked-image-modelling token or decoder), with or without
    the ``focalnet.`` prefix of HF's task models."""
    return bool(_HF_EXTRA_RE.match(key[len('focalnet.'):] if key.startswith('focalnet.') else key))


def hf_to_official(state_dict: Mapping[str, torch.Tensor]):
    """HF transformers keys -> official keys; returns (state_dict, dropped MIM-only keys)."""
    out, dropped = OrderedDict(), []
    for key, value in state_dict.items():
        if is_hf_extra_key(key):
            dropped.append(key)
            continue
        new = key[len('focalnet.'):] if key.startswith('focalnet.') else key
        for pattern, repl in _HF_RENAMES:
            new = pattern.sub(repl, new)
        out[new] = value
    return out, dropped


def to_official(state_dict: Mapping[str, torch.Tensor], fmt: Optional[str] = None):
    """Any supported layout -> official keys; returns (state_dict, format, dropped keys)."""
    fmt = fmt or detect_format(state_dict)
    if fmt == 'timm':
        return timm_to_official(state_dict), fmt, []
    if fmt == 'hf':
        sd, dropped = hf_to_official(state_dict)
        return sd, fmt, dropped
    if fmt == 'official':
        return OrderedDict(state_dict), fmt, []
    raise ValueError(f'Unknown FocalNet checkpoint format {fmt!r}; use one of {FORMATS}.')


# --------------------------------------------------------------------------- what the file is
def _stage_ids(state_dict) -> List[int]:
    return sorted({int(m.group(1)) for k in state_dict for m in [re.match(r'^layers\.(\d+)\.', k)] if m})


def describe_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Architecture facts readable from official-layout tensors alone."""
    if 'patch_embed.proj.weight' not in state_dict:
        raise ValueError('describe_state_dict needs official-layout keys (patch_embed.proj.weight); '
                         'convert with to_official first.')
    stem = state_dict['patch_embed.proj.weight']
    stages = _stage_ids(state_dict)
    depths, levels, windows = [], [], []
    for i in stages:
        blocks = {int(m.group(1)) for k in state_dict
                  for m in [re.match(rf'^layers\.{i}\.blocks\.(\d+)\.', k)] if m}
        depths.append(max(blocks) + 1 if blocks else 0)
        f = state_dict.get(f'layers.{i}.blocks.0.modulation.f.weight')
        levels.append(None if f is None else f.shape[0] - 2 * f.shape[1] - 1)
        k0 = state_dict.get(f'layers.{i}.blocks.0.modulation.focal_layers.0.0.weight')
        windows.append(None if k0 is None else k0.shape[-1])
    down = state_dict.get('layers.0.downsample.proj.weight')
    use_conv_embed = stem.shape[-1] == 7 or (down is not None and down.shape[-1] == 3)
    head = state_dict.get('head.weight')
    return dict(
        embed_dim=stem.shape[0], in_channels=stem.shape[1], stem_kernel=stem.shape[-1],
        patch_size=4 if use_conv_embed else stem.shape[-1],
        downsample_kernel=None if down is None else down.shape[-1],
        depths=tuple(depths), focal_levels=levels, focal_windows=windows,
        use_conv_embed=use_conv_embed,
        use_layerscale=any(k.endswith(('.gamma_1', '.gamma_2')) for k in state_dict),
        use_postln_in_modulation=any('.modulation.ln.' in k for k in state_dict),
        num_classes=None if head is None else head.shape[0],
        has_classifier_norm='norm.weight' in state_dict,
        out_norms=sorted({int(m.group(1)) for k in state_dict for m in [_OUT_NORM_RE.match(k)] if m}))


def match_presets(description: dict, exact: bool = False) -> List[str]:
    """Preset names whose shapes match the file: all visible flags with ``exact``, else at least
    embed_dim / depths / patch size / levels (exact matches first)."""
    def same(name, keys):
        cfg = resolve_arch(name)
        for key in keys:
            want, have = cfg[key], description[key]
            if key == 'depths':
                want = tuple(want)
            elif key in ('focal_levels', 'focal_windows'):
                want, have = {want}, set(have)
            if want != have:
                return False
        return True

    full = ('embed_dim', 'depths', 'patch_size', 'focal_levels', 'focal_windows', 'use_conv_embed',
            'use_layerscale', 'use_postln_in_modulation')
    found = [n for n in ARCHS if same(n, full)]
    if exact:
        return found
    return found or [n for n in ARCHS if same(n, ('embed_dim', 'depths', 'patch_size', 'focal_levels'))]


def _looks_like(description: dict) -> str:
    presets = match_presets(description)
    shape = (f'embed_dim={description["embed_dim"]}, depths={description["depths"]}, '
             f'focal_levels={_compact(description["focal_levels"])}')
    if presets:
        return f"arch={presets[0]!r} ({shape})"
    return f'no released preset ({shape})'


def _compact(values):
    values = list(values)
    return values[0] if values and all(v == values[0] for v in values) else values


def _get_path(config, *path):
    for key in path:
        if isinstance(config, Mapping):
            config = config.get(key)
        elif isinstance(config, argparse.Namespace):
            config = getattr(config, key, None)
        else:
            return None
    return config


def declared_flags(info: dict, fmt: str, raw_state_dict: Optional[Mapping] = None,
                   hf_config: Optional[dict] = None) -> dict:
    """Flags the file states about its own training: its config (official ``MODEL.FOCAL``, our
    converter's copy, HF ``config.json``) or, for timm, post-norm key names. Only flags stated
    somewhere appear; ``_source`` says where they came from."""
    flags, sources = {}, []
    focal = _get_path(info.get('config'), 'MODEL', 'FOCAL')
    if isinstance(focal, Mapping):
        names = dict(USE_POSTLN='use_postln', NORMALIZE_MODULATOR='normalize_modulator',
                     USE_POSTLN_IN_MODULATION='use_postln_in_modulation',
                     USE_LAYERSCALE='use_layerscale', USE_CONV_EMBED='use_conv_embed',
                     FOCAL_LEVELS='focal_levels', FOCAL_WINDOWS='focal_windows',
                     EMBED_DIM='embed_dim', DEPTHS='depths')
        flags.update({ours: focal[theirs] for theirs, ours in names.items() if theirs in focal})
        sources.append("its training config ('config' MODEL.FOCAL)")
    if hf_config and fmt == 'hf':
        names = dict(use_post_layernorm='use_postln', normalize_modulator='normalize_modulator',
                     use_post_layernorm_in_modulation='use_postln_in_modulation',
                     use_layerscale='use_layerscale', use_conv_embed='use_conv_embed',
                     focal_levels='focal_levels', focal_windows='focal_windows',
                     embed_dim='embed_dim', depths='depths')
        flags.update({ours: hf_config[theirs] for theirs, ours in names.items() if theirs in hf_config})
        sources.append('its config.json')
    if fmt == 'timm' and raw_state_dict is not None and 'use_postln' not in flags:
        post = any('.norm1_post.' in k for k in raw_state_dict)
        pre = any(re.search(r'\.blocks\.\d+\.norm1\.', k) for k in raw_state_dict)
        if post != pre:
            flags['use_postln'] = post
            sources.append("its timm key names (norm1_post)" if post else 'its timm key names (norm1)')
    for key in ('focal_levels', 'focal_windows', 'depths'):
        if key in flags and not isinstance(flags[key], int):
            flags[key] = list(flags[key])
    if flags:
        flags['_source'] = ' and '.join(sources)
    return flags


@dataclass
class ConvertedCheckpoint:
    """A checkpoint in the official layout plus what was learnt while converting it."""
    state_dict: 'OrderedDict[str, torch.Tensor]'
    format: str
    wrapper: Optional[str] = None
    prefix: str = ''
    declared: dict = field(default_factory=dict)
    dropped: Dict[str, List[str]] = field(default_factory=dict)


def convert_checkpoint(checkpoint, prefix: Optional[str] = None,
                       hf_config: Optional[dict] = None) -> ConvertedCheckpoint:
    """Any supported checkpoint object -> :class:`ConvertedCheckpoint` (official layout)."""
    tensors, info = unwrap_checkpoint(checkpoint)
    tensors, used_prefix, outside = select_prefix(tensors, prefix)
    state_dict, fmt, hf_dropped = to_official(tensors)
    dropped = {}
    if outside:
        dropped[f'outside prefix {used_prefix!r}'] = outside
    if hf_dropped:
        dropped['masked-image-modelling only'] = hf_dropped
    if info['skipped']:
        dropped['not tensors'] = info['skipped']
    return ConvertedCheckpoint(state_dict=state_dict, format=fmt, wrapper=info['wrapper'],
                               prefix=used_prefix,
                               declared=declared_flags(info, fmt, tensors, hf_config),
                               dropped=dropped)
