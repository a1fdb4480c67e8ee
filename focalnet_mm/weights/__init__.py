"""Pretrained FocalNet weights: every checkpoint format -> the official layout -> a backbone.

sources.py knows where each preset's weights can be downloaded (``focalnet://<preset>``: offline
folder, cache, sources in order); io.py reads files safely; formats.py converts layouts and
describes a file; adapt.py fits tensors to a model and refuses mismatches; loading.py loads with
strict key accounting and reports.

Loading is a pipeline of pure functions on state dicts, each testable alone:

    read_checkpoint            safe read: torch.load(weights_only=True) or safetensors
    convert_checkpoint         unwrap ('model' / 'state_dict' / 'module'), select a prefix
                               ('backbone.', FocalNet-DINO's 'backbone.0.'), detect_format,
                               to_official (timm / HF transformers -> official keys)
    describe_state_dict        what the tensors say (embed_dim, depths, levels, windows, flags)
    declared_flags             what the file says about itself (its training config; flags that
                               are invisible in keys such as use_postln, normalize_modulator)
    check_compatible           the refusals: one-line errors naming the flag or preset to set
    expand_focal_levels        more focal levels in the model than in the file (new gates start at 0)
    resize_focal_kernels       zero-pad in the centre / centre-crop the depthwise focal kernels
    adapt_to_backbone          all of the above against one model, strict key accounting

``load_pretrained`` (used by ``FocalNet.init_weights``) and ``load_model_weights`` (whole
mmdet / mmseg / mmpretrain models, used by the tools) run the pipeline, load with strict
semantics and log a short :class:`LoadReport` through mmengine's logger.
"""
from ..archs import resolve_arch  # noqa: F401  (the presets a file is checked against)
from .adapt import (  # noqa: F401
    backbone_spec,
    check_compatible,
    expand_focal_levels,
    pad_or_crop_kernel,
    resize_focal_kernels,
)
from .formats import (  # noqa: F401
    WRAPPER_KEYS,
    ConvertedCheckpoint,
    convert_checkpoint,
    declared_flags,
    describe_state_dict,
    detect_format,
    hf_to_official,
    is_hf_extra_key,
    match_presets,
    select_prefix,
    strip_ddp_prefix,
    timm_to_official,
    to_official,
    unwrap_checkpoint,
)
from .io import (  # noqa: F401
    CONVERTER,
    UnsafeCheckpointError,
    download_checkpoint,
    is_url,
    local_checkpoint_file,
    read_checkpoint,
    read_sidecar_config,
    resolve_checkpoint_file,
)
from .loading import (  # noqa: F401
    LoadReport,
    adapt_to_backbone,
    check_whole_model_checkpoint,
    is_mmengine_model_checkpoint,
    load_model_weights,
    load_pretrained,
    split_classifier,
    unwrap_model,
    whole_model_mismatch,
)
from .sources import (  # noqa: F401  (registers focalnet:// with mmengine's CheckpointLoader)
    CACHE_ENV,
    OFFLINE_ENV,
    SCHEME,
    UNOBTAINABLE,
    WEIGHT_SOURCES,
    Source,
    WeightsHashError,
    WeightsUnavailableError,
    download_all,
    fetch_weights,
    is_short_name,
    parse_short_name,
)

__all__ = [
    'LoadReport', 'ConvertedCheckpoint', 'UnsafeCheckpointError', 'read_checkpoint',
    'download_checkpoint', 'read_sidecar_config', 'unwrap_checkpoint', 'select_prefix',
    'strip_ddp_prefix', 'detect_format', 'timm_to_official', 'hf_to_official', 'is_hf_extra_key',
    'to_official', 'convert_checkpoint',
    'describe_state_dict', 'match_presets', 'declared_flags', 'check_compatible',
    'pad_or_crop_kernel', 'resize_focal_kernels', 'expand_focal_levels', 'backbone_spec',
    'split_classifier', 'adapt_to_backbone', 'load_pretrained', 'load_model_weights', 'unwrap_model',
    'is_mmengine_model_checkpoint', 'whole_model_mismatch', 'check_whole_model_checkpoint',
    'Source', 'WEIGHT_SOURCES', 'UNOBTAINABLE', 'WeightsUnavailableError', 'WeightsHashError',
    'is_short_name', 'parse_short_name', 'fetch_weights', 'download_all', 'local_checkpoint_file'
]
