"""What runs is what the config says: the project's configs name the safe types themselves (read
by mmengine alone, no tool of ours), and a foreign config gets them from our tools, listed."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import MODELS

import focalnet_mm  # noqa: F401  (registers the types)
from focalnet_mm.config import safe_training
from focalnet_mm.config.safe_training import add_safe_types, log_substitutions, make_training_safe

from conftest import REPO_ROOT


def _safe_types(cfg):
    return (cfg.runner_type, cfg.default_hooks.checkpoint.type, cfg.train_cfg.type,
            cfg.optim_wrapper.type, [h['type'] for h in cfg.custom_hooks], cfg.skip_bad_samples,
            cfg.env_cfg.dist_cfg.timeout)


@pytest.mark.parametrize('config, loop', [
    ('configs/maskrcnn_focalnet_t_3x.py', 'ResumableEpochBasedTrainLoop'),
    ('configs/seg/upernet_focalnet_t_srf_512x512_160k_ade20k.py', 'IterBasedTrainLoop'),
    ('configs/cls/focalnet_t_srf_in1k.py', 'ResumableEpochBasedTrainLoop'),
])
def test_a_project_config_names_the_safe_types_itself(config, loop):
    """What mmdet's/mmseg's/mmpretrain's own train.py read: Config.fromfile and nothing else."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    assert _safe_types(cfg) == ('SkipBadSamplesRunner', 'SafeCheckpointHook', loop,
                                'FiniteOptimWrapper', ['NonFiniteLossHook'],
                                dict(max_share=0.01, max_count=5), 900)
    assert add_safe_types(cfg) == []  # our tools have nothing to add


def test_a_users_config_inherits_the_fragment_by_package_name(tmp_path):
    path = tmp_path / 'mine.py'
    path.write_text("_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',\n"
                    "          'focalnet_mm::_base_/safe_training.py']\n")
    cfg = Config.fromfile(str(path))
    assert cfg.runner_type == 'SkipBadSamplesRunner' and cfg.custom_imports.imports == ['focalnet_mm']
    assert [h['type'] for h in cfg.custom_hooks] == ['NonFiniteLossHook']


def test_a_foreign_config_gets_each_substitution_listed_in_one_block(monkeypatch, tmp_path):
    path = tmp_path / 'foreign.py'
    path.write_text("_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'\n")
    cfg = Config.fromfile(str(path))
    blocks = []
    monkeypatch.setattr(safe_training, '_log_on_first_rank',
                        lambda message, level=None: blocks.append(message))
    changes = make_training_safe(cfg)
    assert changes == [
        'default_hooks.checkpoint.type: CheckpointHook -> SafeCheckpointHook',
        'train_cfg.type: EpochBasedTrainLoop -> ResumableEpochBasedTrainLoop',
        'optim_wrapper.type: OptimWrapper -> FiniteOptimWrapper',
        "custom_hooks: + NonFiniteLossHook(mode='stop', max_dropped=10, max_amp_overflows=20)",
        'runner_type: Runner -> SkipBadSamplesRunner (every data set in SkipBadSamples)']
    assert len(blocks) == 1 and all(line in blocks[0] for line in changes)
    assert 'focalnet_mm::_base_/safe_training.py' in blocks[0]
    assert add_safe_types(cfg) == []  # now the same as a project config
    log_substitutions([])  # nothing added: no block
    assert len(blocks) == 1


def test_the_documented_switches_still_work_on_a_project_config():
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/maskrcnn_focalnet_t_3x.py'))
    cfg.merge_from_dict(dict(nonfinite_loss=dict(mode='drop')))
    assert add_safe_types(cfg) == ["custom_hooks: NonFiniteLossHook mode='drop' (nonfinite_loss.mode)"]
    assert cfg.custom_hooks[0]['mode'] == 'drop'
    cfg.nonfinite_loss = None
    assert add_safe_types(cfg) == [
        'optim_wrapper.type: FiniteOptimWrapper -> OptimWrapper (nonfinite_loss=None)',
        'custom_hooks: - NonFiniteLossHook (nonfinite_loss=None)']
    assert not cfg.custom_hooks


@MODELS.register_module(name='SafeTrainingToy', force=True)
class _Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)

    def forward(self, *args, **kwargs):
        return {}


@pytest.mark.slow  # builds two Runners (about 7 s)
@pytest.mark.parametrize('skip_bad_samples', [dict(max_share=0.05), None])
def test_the_runner_the_config_names_wraps_every_data_set(tmp_path, skip_bad_samples):
    """mmengine's registry builds it from runner_type, as mmdet's own train.py does."""
    from mmengine.registry import RUNNERS
    loader = dict(dataset=dict(type='ToyData', pipeline=[]), sampler=dict(type='DefaultSampler'),
                  batch_size=1)
    cfg = Config(dict(runner_type='SkipBadSamplesRunner', model=dict(type='SafeTrainingToy'),
                      work_dir=str(tmp_path),
                      train_dataloader=loader, skip_bad_samples=skip_bad_samples,
                      train_cfg=dict(by_epoch=True, max_epochs=1),
                      optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1))))
    runner = RUNNERS.build(cfg)
    dataset = runner.cfg.train_dataloader.dataset  # also what the work dir's config dump says
    if skip_bad_samples is None:
        assert dataset.type == 'ToyData'
    else:
        assert dataset.type == 'SkipBadSamples' and dataset.dataset.type == 'ToyData'
        assert dataset.max_bad_share == 0.05
    assert cfg.train_dataloader.dataset.type == 'ToyData'  # the caller's config is not changed
