"""Pretrained FocalNet weights: every checkpoint format -> the official layout -> a backbone.

Loading is a pipeline of pure functions on state dicts, each testable alone:

    read_checkpoint            safe read: torch.load(weights_only=True) or safetensors
    convert_checkpoint         unwrap ('model' / 'state_dict' / 'module'), select a prefix
                               ('backbone.', FocalNet-DINO's 'backbone.0.body.'), detect_format,
                               to_official (timm / HF transformers -> official keys)
    describe_state_dict        what the tensors say (embed_dim, depths, levels, windows, flags)
    declared_flags             what the file says about itself (its training config; flags that
                               are invisible in keys such as use_postln, normalize_modulator)
    check_compatible           the refusals: one-line errors naming the flag or preset to set
    expand_focal_levels        more focal levels in the model than in the file (facts section 4)
    resize_focal_kernels       zero-pad in the centre / centre-crop the depthwise focal kernels
    adapt_to_backbone          all of the above against one model, strict key accounting

``load_pretrained`` (used by ``FocalNet.init_weights``) and ``load_model_weights`` (whole
mmdet / mmseg / mmpretrain models, used by the tools) run the pipeline, load with strict
semantics and log a short :class:`LoadReport` through mmengine's logger.
"""
import argparse
import json
import os
import os.path as osp
import pickle
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

from .models.archs import ARCHS, resolve_arch

FORMATS = ('official', 'timm', 'hf')
WRAPPER_KEYS = ('state_dict', 'model', 'module')
#: prefixes tried, in order, when the caller gives none (FocalNet-DINO, mmdet / mmseg / mmpretrain)
AUTO_PREFIXES = ('backbone.0.body.', 'backbone.')
HF_WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')
CONVERTER = 'tools/model_converters/focalnet2mm.py'

_FOCAL_KERNEL_RE = re.compile(r'^(layers\.\d+\.blocks\.\d+\.modulation\.)focal_layers\.(\d+)\.0\.weight$')
_MODULATION_F_RE = re.compile(r'^(layers\.\d+\.blocks\.\d+\.modulation\.)f\.(weight|bias)$')
_OUT_NORM_RE = re.compile(r'^norm(\d+)\.')


class UnsafeCheckpointError(ValueError):
    """The file needs arbitrary pickled objects to load; nothing from it was executed."""


# --------------------------------------------------------------------------- reading
def is_url(path) -> bool:
    return isinstance(path, str) and path.startswith(('http://', 'https://'))


def download_checkpoint(url: str, model_dir: Optional[str] = None) -> str:
    """Download ``url`` once into torch.hub's checkpoint cache (rank 0 first); returns the path.

    The file is read afterwards by the same safe reader as a local file. A sha256 prefix in the
    file name (OpenMMLab ``name-<8 hex>.pth``) is verified, as torch.hub does.
    """
    from mmengine.dist import barrier, get_dist_info
    from torch.hub import HASH_REGEX, download_url_to_file, get_dir

    model_dir = model_dir or osp.join(get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    filename = osp.basename(url.split('?')[0])
    path = osp.join(model_dir, filename)
    rank, world_size = get_dist_info()
    if rank == 0 and not osp.exists(path):
        match = HASH_REGEX.search(filename)
        download_url_to_file(url, path, hash_prefix=match.group(1) if match else None,
                             progress=True)
    if world_size > 1:
        barrier()
    return path


def resolve_checkpoint_file(path: str) -> str:
    """A file path for ``path`` (an HF model folder resolves to its weights file)."""
    if osp.isdir(path):
        for name in HF_WEIGHT_FILES:
            if osp.isfile(osp.join(path, name)):
                return osp.join(path, name)
        raise FileNotFoundError(f'{path} is a folder without {" or ".join(HF_WEIGHT_FILES)}; '
                                'point the checkpoint at the weights file itself.')
    if not osp.isfile(path):
        raise FileNotFoundError(f'FocalNet checkpoint {path!r} not found; check the path in '
                                'init_cfg=dict(type="Pretrained", checkpoint=...) / pretrained=.')
    return path


def read_checkpoint(path, map_location='cpu'):
    """Read a checkpoint without running any code from it.

    ``.safetensors`` files hold tensors only. Everything else goes through
    ``torch.load(weights_only=True)``, which accepts tensors, containers, the types mmengine
    writes (see ``focalnet_mm.compat``) and ``argparse.Namespace`` (DETR/DINO ``args``). A file
    that needs any other pickled object is refused with :class:`UnsafeCheckpointError`.
    """
    path = str(path)
    if is_url(path):
        path = download_checkpoint(path)
    path = resolve_checkpoint_file(path)
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        device = map_location if isinstance(map_location, str) else 'cpu'
        return load_file(path, device=device)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'GLOBAL ([\w.]+)', str(e)) or re.search(r"got <class '([\w.]+)'>", str(e))
        what = found.group(1) if found else 'a non-tensor Python object'
        raise UnsafeCheckpointError(
            f'Refused to load {path}: it needs the pickled object {what}, and unpickling arbitrary '
            'objects can run code, so only tensors and plain containers are read. If you trust the '
            f'file, rewrite it as plain tensors with: python {CONVERTER} {path} OUT.pth '
            '--trust-pickle') from None


def read_sidecar_config(path) -> Optional[dict]:
    """The HF transformers ``config.json`` next to (or inside) ``path``, if it is a FocalNet one."""
    if not isinstance(path, (str, os.PathLike)) or is_url(str(path)):
        return None
    path = str(path)
    folder = path if osp.isdir(path) else osp.dirname(path)
    config_file = osp.join(folder, 'config.json')
    if not osp.isfile(config_file):
        return None
    try:
        with open(config_file) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and config.get('model_type') == 'focalnet' else None


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


def select_prefix(state_dict: Mapping[str, torch.Tensor], prefix: Optional[str] = None):
    """Drop ``module.`` (DDP), then keep the backbone's keys: returns (state_dict, prefix, dropped).

    ``prefix`` follows mmengine's ``Pretrained(prefix=...)``; without it, FocalNet-DINO's
    ``backbone.0.body.`` and mmdet/mmseg/mmpretrain's ``backbone.`` are recognised.
    """
    state_dict = OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v)
                             for k, v in state_dict.items())
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


def hf_to_official(state_dict: Mapping[str, torch.Tensor]):
    """HF transformers keys -> official keys; returns (state_dict, dropped MIM-only keys)."""
    out, dropped = OrderedDict(), []
    for key, value in state_dict.items():
        new = key[len('focalnet.'):] if key.startswith('focalnet.') else key
        if _HF_EXTRA_RE.match(new):
            dropped.append(key)
            continue
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


# --------------------------------------------------------------------------- tensor surgery
def pad_or_crop_kernel(weight: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a (C, 1, k, k) kernel in the centre to ``size`` or centre-crop it."""
    k = weight.shape[-1]
    if (size - k) % 2:
        raise ValueError(f'Cannot centre a {k}x{k} focal kernel in {size}x{size}: the sizes must '
                         'differ by an even number; use odd focal_windows (e.g. 3, 5, 7, 9).')
    if size > k:
        p = (size - k) // 2
        return torch.nn.functional.pad(weight, (p, p, p, p))
    c = (k - size) // 2
    return weight[..., c:c + size, c:c + size].contiguous()


def resize_focal_kernels(state_dict: Mapping[str, torch.Tensor], target_shapes: Mapping[str, Sequence[int]]):
    """Fit every focal kernel to the model (zero-pad when larger, centre-crop when smaller).

    Zero-padding with padding ``k // 2`` computes exactly the same function (facts section 4).
    Returns (state_dict, [(key, old_size, new_size)]).
    """
    out, resized = OrderedDict(state_dict), []
    for key, value in state_dict.items():
        if not _FOCAL_KERNEL_RE.match(key) or key not in target_shapes:
            continue
        size = tuple(target_shapes[key])[-1]
        if value.shape[-1] != size:
            out[key] = pad_or_crop_kernel(value, size)
            resized.append((key, value.shape[-1], size))
    return out, resized


def expand_focal_levels(state_dict: Mapping[str, torch.Tensor], target_shapes: Mapping[str, Sequence[int]]):
    """Give each block the model's number of focal levels, as the official det/seg loader does.

    ``modulation.f`` rows are [q (C), ctx (C), level gates (L), global gate (1)]. With more
    levels in the model: q/ctx rows and the file's level gates are copied, the global gate goes
    to the model's last row, new gate rows are zero, new ``focal_layers`` keep the model's init
    (not function-preserving: the global context now follows the new last level).
    Returns (state_dict, [(block prefix, file levels, model levels)]).
    """
    out, expanded = OrderedDict(state_dict), []
    for key, value in state_dict.items():
        match = _MODULATION_F_RE.match(key)
        if not match or key not in target_shapes:
            continue
        rows = tuple(target_shapes[key])[0]
        if value.shape[0] == rows:
            continue
        channels = state_dict[match.group(1) + 'f.weight'].shape[1]
        file_levels, model_levels = value.shape[0] - 2 * channels - 1, rows - 2 * channels - 1
        if model_levels < file_levels:
            raise ValueError(f'The checkpoint has {file_levels} focal levels ({match.group(1)}f) but '
                             f'the backbone has {model_levels}: set focal_levels={file_levels} on the '
                             'backbone (dropping levels is not supported, as in the official code).')
        new = value.new_zeros((rows, ) + tuple(value.shape[1:]))
        new[:2 * channels + file_levels] = value[:2 * channels + file_levels]
        new[-1] = value[-1]
        out[key] = new
        if match.group(2) == 'weight':
            expanded.append((match.group(1), file_levels, model_levels))
    return out, expanded


# --------------------------------------------------------------------------- the model side
def backbone_spec(backbone) -> dict:
    """The flags and shapes of a FocalNet backbone that a checkpoint must agree with."""
    s = backbone.arch_settings
    return dict(
        arch=getattr(backbone, 'arch', 'custom'), embed_dim=s['embed_dim'],
        depths=tuple(s['depths']), patch_size=s['patch_size'],
        in_channels=getattr(backbone, 'in_channels', 3),
        focal_levels=list(backbone.focal_levels), focal_windows=list(backbone.focal_windows),
        use_conv_embed=bool(s['use_conv_embed']), use_layerscale=bool(s['use_layerscale']),
        use_postln=bool(s['use_postln']),
        use_postln_in_modulation=bool(s['use_postln_in_modulation']),
        normalize_modulator=bool(s['normalize_modulator']),
        out_indices=tuple(backbone.out_indices), num_stages=backbone.num_stages)


def _flag_error(flag, file_value, model_value, why, source=''):
    return ValueError(f'The checkpoint {why}{source} but the backbone has {flag}={model_value}: '
                      f'set {flag}={file_value} on the backbone.')


def check_compatible(description: dict, spec: dict, declared: Optional[dict] = None) -> List[str]:
    """Refuse a checkpoint that would load into the wrong function; returns warnings.

    Each refusal is a one-line ValueError naming the flag or preset to set. Shapes cover
    channels, depths, conv-embed, layer scale and ``modulation.ln``; flags invisible in keys
    (use_postln, normalize_modulator) are checked against the file's own config when it has one.
    Levels and windows that differ from the file are adapted (and reported) by the loader.
    """
    declared = dict(declared or {})
    warnings = []
    if description['embed_dim'] != spec['embed_dim'] or description['depths'] != spec['depths'] \
            or description['patch_size'] != spec['patch_size']:
        presets = match_presets(description)
        fix = f"set arch={presets[0]!r} on the backbone" if presets else (
            f'set embed_dim={description["embed_dim"]}, depths={description["depths"]}'
            + ('' if description['patch_size'] == spec['patch_size']
               else f', patch_size={description["patch_size"]}') + ' on the backbone')
        raise ValueError(f'The checkpoint is {_looks_like(description)} but the backbone '
                         f'(arch={spec["arch"]!r}) has embed_dim={spec["embed_dim"]}, '
                         f'depths={spec["depths"]}: {fix}.')
    if description['in_channels'] != spec['in_channels']:
        raise ValueError(f'The checkpoint stem takes {description["in_channels"]} input channels but '
                         f'the backbone has in_channels={spec["in_channels"]}: set '
                         f'in_channels={description["in_channels"]}.')
    if description['use_conv_embed'] != spec['use_conv_embed']:
        kernels = f'{description["stem_kernel"]}x{description["stem_kernel"]} stem'
        if description['downsample_kernel']:
            kernels += f' / {description["downsample_kernel"]}x{description["downsample_kernel"]} downsample'
        raise _flag_error('use_conv_embed', description['use_conv_embed'], spec['use_conv_embed'],
                          f'has {kernels} kernels')
    if description['use_layerscale'] != spec['use_layerscale']:
        why = 'has layer-scale tensors (gamma_1/gamma_2)' if description['use_layerscale'] \
            else 'has no layer-scale tensors (gamma_1/gamma_2)'
        raise _flag_error('use_layerscale', description['use_layerscale'], spec['use_layerscale'], why)
    if description['use_postln_in_modulation'] != spec['use_postln_in_modulation']:
        why = 'has modulation.ln tensors' if description['use_postln_in_modulation'] \
            else 'has no modulation.ln tensors'
        raise _flag_error('use_postln_in_modulation', description['use_postln_in_modulation'],
                          spec['use_postln_in_modulation'], why)

    source = declared.pop('_source', '')
    source = f' (from {source})' if source else ''
    for flag in ('use_postln', 'normalize_modulator', 'use_postln_in_modulation', 'use_layerscale',
                 'use_conv_embed'):
        if flag in declared and bool(declared[flag]) != spec[flag]:
            raise _flag_error(flag, bool(declared[flag]), spec[flag],
                              f'was trained with {flag}={bool(declared[flag])}', source)
    for flag in ('focal_levels', 'focal_windows'):
        if flag not in declared:
            continue
        said = declared[flag]
        said = [said] * len(description[flag]) if isinstance(said, int) else list(said)
        if said != list(description[flag]):
            raise ValueError(f'The checkpoint says {flag}={said}{source} but its tensors have '
                             f'{flag}={list(description[flag])}: the file is inconsistent; '
                             f're-export it (python {CONVERTER}) from the original weights.')
    if not any(f in declared for f in ('use_postln', 'normalize_modulator')):
        for name in match_presets(description, exact=True)[:1]:
            preset = resolve_arch(name)
            for flag in ('use_postln', 'normalize_modulator'):
                if preset[flag] != spec[flag]:
                    warnings.append(f'the checkpoint matches arch={name!r}, released with '
                                    f'{flag}={preset[flag]}, but the backbone has {flag}={spec[flag]} '
                                    '(the file does not say; set it if the file is the released one)')
    return warnings


# --------------------------------------------------------------------------- the report
@dataclass
class LoadReport:
    """What happened to every tensor; ``str(report)`` is the log text."""
    source: str
    format: str = ''
    wrapper: Optional[str] = None
    prefix: str = ''
    loaded: List[str] = field(default_factory=list)
    resized: List[Tuple[str, int, int]] = field(default_factory=list)
    expanded: List[Tuple[str, int, int]] = field(default_factory=list)
    mapped: List[Tuple[str, str]] = field(default_factory=list)
    missing_expected: List[str] = field(default_factory=list)
    dropped: Dict[str, List[str]] = field(default_factory=dict)
    head_loaded: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    @staticmethod
    def _modules(keys):
        names = sorted({k.rsplit('.', 1)[0] for k in keys})
        return ', '.join(names[:6]) + (f' (+{len(names) - 6} more)' if len(names) > 6 else '')

    def __str__(self):
        origin = self.format + (f", {self.wrapper!r} wrapper" if self.wrapper else '') + (
            f', prefix {self.prefix!r}' if self.prefix else '')
        lines = [f'FocalNet weights from {self.source} ({origin}): {len(self.loaded)} tensors loaded']
        if self.resized:
            counts = Counter((a, b) for _, a, b in self.resized)
            how = ', '.join(f'{a}->{b} x{n}' for (a, b), n in sorted(counts.items()))
            lines.append(f'  focal kernels resized (zero-pad centre / centre-crop): {how}')
        if self.expanded:
            counts = Counter((a, b) for _, a, b in self.expanded)
            how = ', '.join(f'{a}->{b} levels x{n} blocks' for (a, b), n in sorted(counts.items()))
            lines.append(f'  focal levels expanded (new gate rows zero, new focal convs keep their '
                         f'init; not function-preserving): {how}')
        for src, dst in self.mapped:
            lines.append(f'  classifier {src} loaded as {dst} (the final norm of the last stage)')
        if self.head_loaded:
            lines.append(f'  classification head loaded: {self._modules(self.head_loaded)}')
        norms = sorted({k.split('.')[0] for k in self.missing_expected if _OUT_NORM_RE.match(k)})
        new_convs = [k for k in self.missing_expected if not _OUT_NORM_RE.match(k)]
        if norms:
            lines.append(f'  expected missing, keep their init: {", ".join(norms)} (new output norms)')
        if new_convs:
            levels = sorted({int(re.search(r'focal_layers\.(\d+)\.', k).group(1)) for k in new_convs})
            lines.append(f'  expected missing, keep their init: {len(new_convs)} focal convs of the new '
                         f'levels (focal_layers.{"/".join(map(str, levels))})')
        for reason, keys in self.dropped.items():
            lines.append(f'  dropped ({reason}): {len(keys)} tensors: {self._modules(keys)}')
        for warning in self.warnings:
            lines.append(f'  WARNING: {warning}')
        return '\n'.join(lines)


# --------------------------------------------------------------------------- adapting & loading
def split_classifier(state_dict: Mapping[str, torch.Tensor]):
    """(backbone tensors, classification ``head.*``, classification final ``norm.*``)."""
    backbone, head, norm = OrderedDict(), OrderedDict(), OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('head.'):
            head[key] = value
        elif key.startswith('norm.'):
            norm[key] = value
        else:
            backbone[key] = value
    return backbone, head, norm


def adapt_to_backbone(converted: ConvertedCheckpoint, backbone, report: Optional[LoadReport] = None):
    """Check and adapt an official-layout checkpoint to ``backbone``; returns (state_dict, report).

    Every model key ends up loaded or expected-missing (``norm{i}`` new output norms, focal
    convs of new levels); every file key loaded or dropped with a reason; anything else raises.
    """
    report = report or LoadReport(source='<state dict>')
    report.format, report.wrapper, report.prefix = converted.format, converted.wrapper, converted.prefix
    for reason, keys in converted.dropped.items():
        report.dropped.setdefault(reason, []).extend(keys)
    spec = backbone_spec(backbone)
    state_dict, head, cls_norm = split_classifier(converted.state_dict)
    description = describe_state_dict(converted.state_dict)
    report.warnings += check_compatible(description, spec, converted.declared)

    target = OrderedDict((k, tuple(v.shape)) for k, v in backbone.state_dict().items())
    last = spec['num_stages'] - 1
    if cls_norm:
        dst = f'norm{last}'
        if last in spec['out_indices'] and f'{dst}.weight' not in state_dict \
                and tuple(cls_norm['norm.weight'].shape) == target[f'{dst}.weight']:
            for key, value in cls_norm.items():
                state_dict[dst + key[len('norm'):]] = value
            report.mapped.append(('norm', dst))
        else:
            report.dropped.setdefault('classification final norm', []).extend(cls_norm)
    if head:
        report.dropped.setdefault('classification head', []).extend(head)

    state_dict, expanded = expand_focal_levels(state_dict, target)
    state_dict, resized = resize_focal_kernels(state_dict, target)
    report.expanded += expanded
    report.resized += resized

    extra_norms = [k for k in state_dict if _OUT_NORM_RE.match(k) and k not in target]
    for key in extra_norms:
        state_dict.pop(key)
    if extra_norms:
        report.dropped.setdefault('output norms of stages not in out_indices', []).extend(extra_norms)

    unexpected = [k for k in state_dict if k not in target]
    if unexpected:
        raise ValueError(f'The checkpoint has {len(unexpected)} tensors that this FocalNet does not '
                         f'(e.g. {unexpected[:3]}); it is {_looks_like(description)}: match the '
                         'backbone arch to it or set init_cfg prefix to the backbone part.')
    mismatched = [f'{k} {tuple(v.shape)} vs {target[k]}' for k, v in state_dict.items()
                  if tuple(v.shape) != target[k]]
    if mismatched:
        raise ValueError(f'Checkpoint tensors do not fit the backbone: {mismatched[:3]}; the file is '
                         f'{_looks_like(description)}: use that arch.')
    new_levels = {f'{p}focal_layers.{k}.0.weight' for p, a, b in expanded for k in range(a, b)}
    missing = [k for k in target if k not in state_dict]
    expected = [k for k in missing if _OUT_NORM_RE.match(k) or k in new_levels]
    unexplained = [k for k in missing if k not in expected]
    if unexplained:
        raise ValueError(f'The checkpoint lacks {len(unexplained)} backbone tensors '
                         f'(e.g. {unexplained[:3]}): it is incomplete or of another model; '
                         f'it looks like {_looks_like(description)}.')
    report.missing_expected += expected
    report.loaded += list(state_dict)
    return state_dict, report


def _log(report: LoadReport, logger):
    """One log record: WARNING level when the report carries warnings, INFO otherwise."""
    import logging
    level = logging.WARNING if report.warnings else logging.INFO
    print_log(str(report), logger=logger or 'current', level=level)


def _read_and_convert(checkpoint, prefix, map_location):
    if isinstance(checkpoint, (str, os.PathLike)):
        source = str(checkpoint)
        obj = read_checkpoint(source, map_location=map_location)
        hf_config = read_sidecar_config(source)
    else:
        source, obj, hf_config = '<in-memory checkpoint>', checkpoint, None
    return source, convert_checkpoint(obj, prefix=prefix, hf_config=hf_config)


def _load_strict(module: nn.Module, state_dict, expected_missing):
    result = module.load_state_dict(state_dict, strict=False)
    surprises = sorted(set(result.missing_keys) - set(expected_missing)) + sorted(result.unexpected_keys)
    if surprises:  # adapt_to_backbone accounts for every key; this guards against drift
        raise RuntimeError(f'FocalNet weight loading left unexplained keys {surprises[:5]}.')


def load_pretrained(backbone, checkpoint, prefix: Optional[str] = None, map_location='cpu',
                    logger=None) -> LoadReport:
    """Load any supported FocalNet checkpoint into a FocalNet backbone and log the report.

    Args:
        backbone: a :class:`focalnet_mm.FocalNet`.
        checkpoint: path, URL, HF model folder, or an already-read checkpoint dict.
        prefix: keep only keys under this prefix (mmengine ``Pretrained(prefix=...)``); by default
            ``backbone.0.body.`` / ``backbone.`` are recognised and ``module.`` is stripped.
        map_location: device for the tensors read.
        logger: mmengine logger or its name; default the current MMLogger.
    """
    source, converted = _read_and_convert(checkpoint, prefix, map_location)
    state_dict, report = adapt_to_backbone(converted, backbone, LoadReport(source=source))
    _load_strict(backbone, state_dict, report.missing_expected)
    _log(report, logger)
    return report


# --------------------------------------------------------------------------- whole models
def _strip_module(state_dict):
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state_dict.items()}


def is_mmengine_model_checkpoint(checkpoint) -> bool:
    """True for a whole-model mmengine checkpoint (``state_dict`` with ``backbone.`` keys and
    keys of other modules): those load with mmengine's ``load_checkpoint``. False for backbone
    files in any FocalNet format (load them with :func:`load_model_weights`).

    ``checkpoint`` is a path/URL (read safely) or an already-read object.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = read_checkpoint(str(checkpoint))
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get('state_dict'), Mapping):
        return False
    keys = list(_strip_module(checkpoint['state_dict']))
    return any(k.startswith('backbone.') for k in keys) and any(
        not k.startswith('backbone.') for k in keys)


def _head_fc(model) -> Optional[nn.Linear]:
    fc = getattr(getattr(model, 'head', None), 'fc', None)
    return fc if isinstance(fc, nn.Linear) else None


def load_model_weights(model: nn.Module, checkpoint, map_location='cpu', logger=None) -> LoadReport:
    """Load a checkpoint into a whole mmdet / mmseg / mmpretrain model whose backbone is FocalNet.

    A whole-model mmengine checkpoint is loaded by mmengine's ``load_checkpoint`` rules (strict).
    A FocalNet-format file (official classification / det, timm, HF) goes into ``model.backbone``
    as :func:`load_pretrained` does; its classification head (``head.*``, timm ``head.fc.*``,
    HF ``classifier.*``) goes into ``model.head.fc`` when the model has a linear ``head.fc``
    (mmpretrain ``LinearClsHead``), otherwise it is dropped and reported.
    """
    source = str(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else '<in-memory checkpoint>'
    obj = read_checkpoint(source, map_location) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    if is_mmengine_model_checkpoint(obj):
        from mmengine.runner.checkpoint import _load_checkpoint_to_model
        _load_checkpoint_to_model(model, obj, strict=True, logger=logger)
        report = LoadReport(source=source, format='mmengine whole model', wrapper='state_dict',
                            loaded=list(obj['state_dict']))
        _log(report, logger)
        return report
    backbone = getattr(model, 'backbone', None)
    if backbone is None or not hasattr(backbone, 'arch_settings'):
        raise ValueError(f'load_model_weights needs a model whose .backbone is a FocalNet; got '
                         f'{type(model).__name__} with backbone {type(backbone).__name__}.')
    hf_config = read_sidecar_config(source) if isinstance(checkpoint, (str, os.PathLike)) else None
    converted = convert_checkpoint(obj, hf_config=hf_config)
    head = OrderedDict((k[len('head.'):], v) for k, v in converted.state_dict.items()
                       if k.startswith('head.'))
    fc = _head_fc(model)
    if fc is not None and head:
        converted.state_dict = OrderedDict(
            (k, v) for k, v in converted.state_dict.items() if not k.startswith('head.'))
    state_dict, report = adapt_to_backbone(converted, backbone, LoadReport(source=source))
    if fc is not None:
        if not head:
            report.warnings.append('the model has a classification head (head.fc) but the file has '
                                   'none: head.fc keeps its random init')
        else:
            fc_shape = tuple(fc.weight.shape)
            if tuple(head['weight'].shape) != fc_shape:
                raise ValueError(f'The checkpoint head has {head["weight"].shape[0]} classes x '
                                 f'{head["weight"].shape[1]} channels but model.head.fc is '
                                 f'{fc_shape[0]} x {fc_shape[1]}: set head.num_classes='
                                 f'{head["weight"].shape[0]} in the config.')
            fc.load_state_dict(head, strict=True)
            report.head_loaded += [f'head.fc.{k}' for k in head]
    _load_strict(backbone, state_dict, report.missing_expected)
    _log(report, logger)
    return report


__all__ = [
    'LoadReport', 'ConvertedCheckpoint', 'UnsafeCheckpointError', 'read_checkpoint',
    'download_checkpoint', 'read_sidecar_config', 'unwrap_checkpoint', 'select_prefix',
    'detect_format', 'timm_to_official', 'hf_to_official', 'to_official', 'convert_checkpoint',
    'describe_state_dict', 'match_presets', 'declared_flags', 'check_compatible',
    'pad_or_crop_kernel', 'resize_focal_kernels', 'expand_focal_levels', 'backbone_spec',
    'split_classifier', 'adapt_to_backbone', 'load_pretrained', 'load_model_weights',
    'is_mmengine_model_checkpoint'
]
