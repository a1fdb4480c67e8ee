"""mmengine's runners with every data set of the config wrapped in :class:`SkipBadSamples`.

A config names its data sets flat (``train_dataloader.dataset.data_root=...`` must keep meaning
what the docs say), so the wrapper cannot sit in the config's dataloader dicts; a config names one
of these runners instead (``runner_type``, set by ``configs/_base_/safe_training.py``), and the
runner wraps every leaf data set when it is built from the config, after the tools' own edits of
the dataloaders (e.g. ``--tta``). The config it dumps to the work dir shows the wrappers.
``skip_bad_samples = dict(max_share=..., max_count=...)`` sets the limits (the run stops beyond
the larger of the two); ``skip_bad_samples = None`` leaves the data sets as they are.
"""
import copy

from mmengine.runner import FlexibleRunner, Runner

from .bad_samples import wrap_datasets


class _WrapsDatasets:
    """``from_cfg`` of a runner class, with the data sets wrapped first (see the module doc)."""

    @classmethod
    def from_cfg(cls, cfg):
        cfg = copy.deepcopy(cfg)
        wrap_datasets(cfg)
        return super().from_cfg(cfg)


class SkipBadSamplesRunner(_WrapsDatasets, Runner):
    """mmengine's Runner; every data set in SkipBadSamples."""


class SkipBadSamplesFlexibleRunner(_WrapsDatasets, FlexibleRunner):
    """mmengine's FlexibleRunner (a config with a ``strategy``, e.g. FSDP); every data set in
    SkipBadSamples."""


#: the runner that wraps the data sets, for each runner a config may name (or leave to the tools)
WRAPPING_RUNNERS = {'Runner': 'SkipBadSamplesRunner', 'FlexibleRunner': 'SkipBadSamplesFlexibleRunner'}
