"""Fitting official-layout tensors to a model: kernel resizing, level expansion, refusals."""
import re
from collections import OrderedDict
from typing import List, Mapping, Optional, Sequence

import torch

from ..archs import resolve_arch
from .formats import _looks_like, match_presets
from .io import CONVERTER

_FOCAL_KERNEL_RE = re.compile(r'^(layers\.\d+\.blocks\.\d+\.modulation\.)focal_layers\.(\d+)\.0\.weight$')
_MODULATION_F_RE = re.compile(r'^(layers\.\d+\.blocks\.\d+\.modulation\.)f\.(weight|bias)$')


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

    A depthwise kernel zero-padded in the centre, applied with padding ``k // 2``, computes
    exactly the same function as the original (the official det/seg loader does the same).
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
