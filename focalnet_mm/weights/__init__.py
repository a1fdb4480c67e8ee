"""Pretrained FocalNet weights: every checkpoint format -> the official layout -> a backbone.

Modules, each importing only those listed before it: integrity.py (is a file a whole checkpoint),
download.py (the one download path, local rank 0 first), sources.py (where each preset's weights
can be downloaded: ``focalnet://<preset>`` from the offline folder, the cache, the sources in
order), formats.py (layouts converted and a file described), io.py (files read safely; registers
``focalnet://`` with mmengine), adapt.py (tensors fitted to a model, mismatches refused),
loading.py (strict key accounting and a report). This package exports what the rest of the
package and the tools use; tests and experts import the modules.

Loading is a pipeline of pure functions on state dicts (io.py, formats.py, adapt.py), each
testable alone:

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
from .download import WeightsHashError
from .formats import (
    WRAPPER_KEYS,
    convert_checkpoint,
    describe_state_dict,
    is_hf_extra_key,
    match_presets,
    select_prefix,
    unwrap_checkpoint,
)
from .io import CONVERTER, local_checkpoint_file, read_checkpoint, read_sidecar_config
from .loading import (
    LoadReport,
    adapt_to_backbone,
    check_whole_model_checkpoint,
    is_mmengine_model_checkpoint,
    load_model_weights,
    load_pretrained,
    split_classifier,
    unwrap_model,
)
from .sources import WeightsUnavailableError

__all__ = [
    'CONVERTER', 'WRAPPER_KEYS', 'LoadReport', 'WeightsHashError', 'WeightsUnavailableError',
    'adapt_to_backbone', 'check_whole_model_checkpoint', 'convert_checkpoint',
    'describe_state_dict', 'is_hf_extra_key', 'is_mmengine_model_checkpoint',
    'load_model_weights', 'load_pretrained', 'local_checkpoint_file', 'match_presets',
    'read_checkpoint', 'read_sidecar_config', 'select_prefix', 'split_classifier',
    'unwrap_checkpoint', 'unwrap_model'
]
