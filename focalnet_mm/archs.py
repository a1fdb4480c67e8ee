"""FocalNet presets: one row per released checkpoint, with the flags it was trained with.

Sources: the official classification configs and model functions (microsoft/FocalNet), and the
flags stored in the released checkpoints.
Every value here can be overridden by an explicit keyword of :class:`FocalNet`.
"""
import copy

#: keyword defaults shared by every preset (a preset lists only what differs)
DEFAULTS = dict(
    patch_size=4,
    embed_dim=96,
    depths=(2, 2, 6, 2),
    focal_levels=2,
    focal_windows=3,
    use_conv_embed=False,
    use_layerscale=False,
    use_postln=False,
    use_postln_in_modulation=False,
    normalize_modulator=False,
)

_LARGE = dict(use_conv_embed=True, use_postln=True, use_layerscale=True)

ARCHS = {
    'tiny_srf': dict(embed_dim=96, depths=(2, 2, 6, 2), focal_levels=2),
    'tiny_lrf': dict(embed_dim=96, depths=(2, 2, 6, 2), focal_levels=3),
    'small_srf': dict(embed_dim=96, depths=(2, 2, 18, 2), focal_levels=2),
    'small_lrf': dict(embed_dim=96, depths=(2, 2, 18, 2), focal_levels=3),
    'base_srf': dict(embed_dim=128, depths=(2, 2, 18, 2), focal_levels=2),
    'base_lrf': dict(embed_dim=128, depths=(2, 2, 18, 2), focal_levels=3),
    # 22k models at 384 (L, XL) or 224 (H); normalize_modulator follows the official yaml.
    'large_fl3': dict(embed_dim=192, depths=(2, 2, 18, 2), focal_levels=3, focal_windows=5, **_LARGE),
    'large_fl4': dict(embed_dim=192, depths=(2, 2, 18, 2), focal_levels=4, focal_windows=3,
                      normalize_modulator=True, **_LARGE),
    'xlarge_fl3': dict(embed_dim=256, depths=(2, 2, 18, 2), focal_levels=3, focal_windows=5, **_LARGE),
    'xlarge_fl4': dict(embed_dim=256, depths=(2, 2, 18, 2), focal_levels=4, focal_windows=3, **_LARGE),
    'huge_fl3': dict(embed_dim=352, depths=(2, 2, 18, 2), focal_levels=3, focal_windows=3,
                     use_postln_in_modulation=True, **_LARGE),
    'huge_fl4': dict(embed_dim=352, depths=(2, 2, 18, 2), focal_levels=4, focal_windows=3,
                     use_postln_in_modulation=True, **_LARGE),
    # isotropic: patch 16, one stage of 12 blocks, no downsampling
    'tiny_iso': dict(patch_size=16, embed_dim=192, depths=(12, ), focal_levels=3),
    'small_iso': dict(patch_size=16, embed_dim=384, depths=(12, ), focal_levels=3),
    'base_iso': dict(patch_size=16, embed_dim=768, depths=(12, ), focal_levels=3,
                     use_layerscale=True, use_postln=True),
}

#: timm model names for the presets timm implements (the numerical reference in tests)
TIMM_NAMES = {name: f'focalnet_{name}' for name in ARCHS if not name.endswith('_iso')}


def resolve_arch(arch, **overrides):
    """Merge defaults, the preset (name or dict) and explicit keywords (those not None)."""
    if isinstance(arch, str):
        if arch not in ARCHS:
            raise ValueError(f'Unknown FocalNet arch {arch!r}; use one of {sorted(ARCHS)} '
                             'or a dict of constructor keywords.')
        preset = ARCHS[arch]
    elif isinstance(arch, dict):
        unknown = set(arch) - set(DEFAULTS)
        if unknown:
            raise ValueError(f'Unknown keys {sorted(unknown)} in the FocalNet arch dict; '
                             f'allowed keys are {sorted(DEFAULTS)}.')
        preset = arch
    else:
        raise TypeError(f'FocalNet arch must be a preset name or a dict, not {type(arch).__name__}.')
    cfg = copy.deepcopy(DEFAULTS)
    cfg.update(copy.deepcopy(preset))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg
