"""mmengine's runners with every data set of the config wrapped in :class:`SkipBadSamples`.

A config names its data sets flat (``train_dataloader.dataset.data_root=...`` must keep meaning
what the docs say), so the wrapper cannot sit in the config's dataloader dicts; a config names one
of these runners instead (``runner_type``, set by ``configs/_base_/safe_training.py``), and the
runner wraps every leaf data set when it is built from the config, after the tools' own edits of
the dataloaders (e.g. ``--tta``). The config it dumps to the work dir shows the wrappers.
``skip_bad_samples = dict(max_share=..., max_count=...)`` sets the limits (the run stops beyond
the larger of the two); ``skip_bad_samples = None`` leaves the data sets as they are.

These runners also format the config's text once per content (:class:`_FormattedOnceConfig`),
where mmengine formats it anew each time it is asked (docs/training.md).
"""
import copy

from mmengine.config import Config
from mmengine.runner import FlexibleRunner, Runner

from .bad_samples import wrap_datasets


class _FormattedOnceConfig(Config):
    """A Config that formats its text once for each content it has.

    mmengine's Runner asks for ``cfg.pretty_text`` when it starts (dump to the work dir, the log,
    the visualizer's copy, the runtime info) and in every checkpoint it saves, and each call formats
    the whole config anew with yapf, whose search grows with the lines a long path such as
    ``data_root`` breaks (seconds per call on a CPU, docs/training.md), paid again at every
    epoch's checkpoint and every new best one. The text depends only on the config's content, so
    it is kept while the content stays the same.
    """

    @property
    def pretty_text(self):
        key = (repr(self._cfg_dict), getattr(self, '_format_python_code', True))
        cached = self.__dict__.get('_formatted')
        if cached is None or cached[0] != key:
            cached = (key, super().pretty_text)
            object.__setattr__(self, '_formatted', cached)  # Config.__setattr__ sets config keys
        return cached[1]


def formatted_once(cfg):
    """``cfg`` as a :class:`_FormattedOnceConfig` (a shallow copy, as ``Config.copy`` makes)."""
    other = _FormattedOnceConfig.__new__(_FormattedOnceConfig)
    other.__dict__.update(cfg.__dict__)
    other.__dict__.pop('_formatted', None)
    return other


class _WrapsDatasets:
    """``from_cfg`` of a runner class, with the data sets wrapped first (see the module doc), and
    the config's text formatted once (:class:`_FormattedOnceConfig`; the Runner keeps a deep copy,
    of the same class)."""

    @classmethod
    def from_cfg(cls, cfg):
        cfg = copy.deepcopy(cfg)
        wrap_datasets(cfg)
        return super().from_cfg(formatted_once(cfg))


class SkipBadSamplesRunner(_WrapsDatasets, Runner):
    """mmengine's Runner; every data set in SkipBadSamples."""


class SkipBadSamplesFlexibleRunner(_WrapsDatasets, FlexibleRunner):
    """mmengine's FlexibleRunner (a config with a ``strategy``, e.g. FSDP); every data set in
    SkipBadSamples."""


#: the runner that wraps the data sets, for each runner a config may name (or leave to the tools)
WRAPPING_RUNNERS = {'Runner': 'SkipBadSamplesRunner', 'FlexibleRunner': 'SkipBadSamplesFlexibleRunner'}
