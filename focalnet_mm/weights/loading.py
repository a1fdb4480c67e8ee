"""Loading into a backbone or a whole model with strict key accounting and a logged report."""
import logging
import os
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper

from .adapt import backbone_spec, check_compatible, expand_focal_levels, resize_focal_kernels
from .formats import (
    _OUT_NORM_RE,
    ConvertedCheckpoint,
    _looks_like,
    convert_checkpoint,
    describe_state_dict,
    strip_ddp_prefix,
)
from .io import read_checkpoint, read_sidecar_config


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


def _read_and_convert(checkpoint, prefix, map_location, weights_dir=None):
    if isinstance(checkpoint, (str, os.PathLike)):
        source = str(checkpoint)
        obj = read_checkpoint(source, map_location=map_location, weights_dir=weights_dir)
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
                    logger=None, weights_dir: Optional[str] = None) -> LoadReport:
    """Load any supported FocalNet checkpoint into a FocalNet backbone and log the report.

    Args:
        backbone: a :class:`focalnet_mm.FocalNet`.
        checkpoint: path, URL, ``focalnet://<preset>``, HF model folder, or a read checkpoint.
        prefix: keep only keys under this prefix (mmengine ``Pretrained(prefix=...)``); by default
            ``backbone.0.body.`` / ``backbone.`` are recognised and ``module.`` is stripped.
        map_location: device for the tensors read.
        logger: mmengine logger or its name; default the current MMLogger.
        weights_dir: offline folder searched first for ``focalnet://`` names.
    """
    source, converted = _read_and_convert(checkpoint, prefix, map_location, weights_dir)
    state_dict, report = adapt_to_backbone(converted, backbone, LoadReport(source=source))
    _load_strict(backbone, state_dict, report.missing_expected)
    _log(report, logger)
    return report


# --------------------------------------------------------------------------- whole models
def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP / FSDP / mmengine wrappers and test-time-augmentation models
    (``--tta`` wraps the model in the library's BaseTTAModel), or the model itself."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


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
    keys = list(strip_ddp_prefix(checkpoint['state_dict']))
    return any(k.startswith('backbone.') for k in keys) and any(
        not k.startswith('backbone.') for k in keys)


def whole_model_mismatch(model_state: Mapping, checkpoint_state: Mapping) -> Dict[str, list]:
    """Keys of a whole-model checkpoint against a model's: ``missing`` (model keys absent from
    the file), ``unexpected`` (file keys the model lacks), ``shape`` ((key, file shape, model
    shape) for tensors of both that differ)."""
    state = strip_ddp_prefix(checkpoint_state)
    shape = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in model_state.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    return dict(missing=[k for k in model_state if k not in state],
                unexpected=[k for k in state if k not in model_state], shape=shape)


def check_whole_model_checkpoint(model: nn.Module, checkpoint, logger=None,
                                 source: Optional[str] = None) -> None:
    """Refuse, in one line, a whole-model checkpoint that does not fit ``model``.

    mmengine's ``load_from`` only warns about missing or reshaped tensors and then evaluates a
    partly random model; this names what differs and the backbone the file was trained with.
    Keys the model lacks are reported (logged) but allowed. ``checkpoint`` is a path or an
    already-read object (then ``source`` names it in messages).
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        source, obj = str(checkpoint), read_checkpoint(str(checkpoint))
    else:
        source, obj = source or '<in-memory checkpoint>', checkpoint
    model = unwrap_model(model)
    diff = whole_model_mismatch(model.state_dict(), obj['state_dict'])
    if diff['missing'] or diff['shape']:
        parts = []
        if diff['shape']:
            key, theirs, ours = diff['shape'][0]
            parts.append(f'{len(diff["shape"])} tensors differ in shape (first: {key} '
                         f'{list(theirs)} in the file, {list(ours)} in the model)')
        if diff['missing']:
            parts.append(f'{len(diff["missing"])} model tensors are not in the file (first: '
                         f'{diff["missing"][0]})')
        cfg_text = str(obj.get('meta', {}).get('cfg', ''))
        trained = re.search(r"arch\s*=\s*'(\w+)'", cfg_text)
        hint = (f'; the file was trained with backbone arch={trained.group(1)!r}' if trained else '')
        raise ValueError(f'{source} does not fit this config\'s model: {"; ".join(parts)}{hint}. '
                         'Use the config it was trained with.')
    if diff['unexpected']:
        print_log(f'{source}: {len(diff["unexpected"])} tensors of the file are not used by the '
                  f'model ({LoadReport._modules(diff["unexpected"])})', logger=logger,
                  level=logging.WARNING)


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
    model = unwrap_model(model)
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
    outside = [k for keys in converted.dropped.values() for k in keys]
    if any(k.startswith('transformer.') for k in outside) and any(
            k.startswith('input_proj.') for k in outside):
        raise ValueError(f'{source} is a whole FocalNet-DINO detector (IDEA-Research DINO layout), '
                         'not a backbone file: convert it to this config\'s keys first with '
                         'python tools/model_converters/focalnet_dino2mm.py SRC OUT.pth --config CONFIG')
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
