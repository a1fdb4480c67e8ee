# What keeps a run safe, named in the config so that every tool runs it: tools/train.py and
# tools/test.py, mmdet's / mmseg's / mmpretrain's own tools, `mim train` (docs/training.md "Safe
# training"). A second base beside an mmdet/mmseg/mmpretrain config: every name here is new to
# those bases, so the two merge without a clash:
#   _base_ = ['mmdet::...', 'focalnet_mm::_base_/safe_training.py']
# The keys those bases own cannot come from a second base (mmengine refuses a key defined by two
# bases); the config names their safe types itself, as each root config of configs/ does:
#   default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))  # atomic; saved on SIGTERM
#   train_cfg = dict(type='ResumableEpochBasedTrainLoop')  # epoch-based runs: stop/resume mid-epoch
#   optim_wrapper = dict(type='FiniteOptimWrapper')  # (or FiniteAmp/FiniteFSDP): no step on NaN
#   env_cfg = dict(dist_cfg=dict(timeout=900))  # a dead rank is named within 15 minutes
# tools/train.py gives a config that lacks them the same, and lists each one in one log block.
custom_imports = dict(imports=['focalnet_mm'], allow_failed_imports=False)

# Every data set in SkipBadSamples (the runner wraps them when built: a config names its data
# sets flat, e.g. train_dataloader.dataset.data_root): a sample that cannot be loaded is skipped,
# named once and replaced; the run stops once a data set's bad samples pass the larger of
# max_share of the set and max_count samples (a few broken files never end a small set's run).
# skip_bad_samples=None leaves the data sets as they are. A config with a `strategy` (FSDP) names
# runner_type='SkipBadSamplesFlexibleRunner'.
runner_type = 'SkipBadSamplesRunner'
skip_bad_samples = dict(max_share=0.01, max_count=5)

# A non-finite loss stops the run before the optimizer step, naming the batch (needs the Finite*
# optimizer wrapper above); mode='drop' drops such batches instead, at most max_dropped of them.
# With tools/train.py: --cfg-options nonfinite_loss.mode=drop, or nonfinite_loss=None (no guard).
custom_hooks = [dict(type='NonFiniteLossHook', mode='stop', max_dropped=10, max_amp_overflows=20)]
