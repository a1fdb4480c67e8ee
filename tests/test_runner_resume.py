"""mmengine's Runner saves, resumes and continues on torch >= 2.6 with safe
loading still on (``focalnet_mm.compat`` allows exactly the types mmengine writes)."""
import itertools
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

import focalnet_mm  # noqa: F401  (compat fixes)


class ToyRegressor(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.linear(torch.stack(inputs) if isinstance(inputs, list) else inputs)
        if mode == 'loss':
            return dict(loss=((out.squeeze(1) - targets) ** 2).mean())
        return out


class ToyDataset(torch.utils.data.Dataset):
    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(32, 4, generator=generator)
        self.y = self.x @ torch.tensor([1., -2., 3., 0.5]) + 0.1

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], targets=self.y[i])


class NumpyMeta(Hook):
    """Writes numpy values into every checkpoint, as mmdet/mmseg hooks and metrics do."""

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint['meta']['np_array'] = np.arange(3, dtype=np.float32)
        checkpoint['meta']['np_scalar'] = np.float64(0.25)
        checkpoint['meta']['np_int'] = np.int64(7)


class RecordIters(Hook):
    def __init__(self, stop_after=None):
        self.trained, self.stop_after = [], stop_after

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.trained.append(runner.iter)  # 0-based index of the iteration that just ran
        if self.stop_after is not None and runner.iter + 1 == self.stop_after:
            raise KeyboardInterrupt  # the job is killed after this iteration


_RUN_IDS = itertools.count()  # mmengine keys loggers/message hubs by experiment name


def make_runner(work_dir, max_iters, recorder, resume=False, resume_from=None):
    torch.manual_seed(0)  # the same initial weights in every run
    return Runner(
        model=ToyRegressor(),
        work_dir=str(work_dir),
        experiment_name=f'toy_{next(_RUN_IDS)}',
        train_dataloader=dict(dataset=ToyDataset(), sampler=dict(type='DefaultSampler', shuffle=True),
                              batch_size=4, num_workers=0, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.05)),
        param_scheduler=dict(type='MultiStepLR', milestones=[3], by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        log_processor=dict(by_epoch=False),
        custom_hooks=[NumpyMeta(), recorder],
        randomness=dict(seed=0),
        resume=resume,
        load_from=resume_from,
        default_scope='mmengine')


def weights(runner):
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


@pytest.mark.slow
def test_interrupted_runner_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(tmp_path):
    reference = make_runner(tmp_path / 'reference', 6, RecordIters())
    reference.train()

    interrupted = RecordIters(stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        make_runner(tmp_path / 'run', 6, interrupted).train()
    assert interrupted.trained == [0, 1, 2]
    checkpoint = tmp_path / 'run' / 'iter_2.pth'
    assert checkpoint.is_file() and not (tmp_path / 'run' / 'iter_4.pth').exists()

    # what mmengine wrote needs the allow-list: message hub buffers and numpy metadata
    saved = torch.load(checkpoint, map_location='cpu')  # torch's default: weights_only=True
    assert saved['meta']['iter'] == 2 and saved['meta']['np_int'] == 7
    np.testing.assert_array_equal(saved['meta']['np_array'], [0., 1., 2.])
    assert type(saved['message_hub']['log_scalars']['train/loss']).__name__ == 'HistoryBuffer'

    resumed_iters = RecordIters()
    resumed = make_runner(tmp_path / 'run', 6, resumed_iters, resume=True,
                          resume_from=str(checkpoint))
    resumed.train()
    assert resumed_iters.trained == [2, 3, 4, 5]  # continues at the saved iteration, not at 0
    assert resumed.iter == 6
    assert resumed.message_hub.get_info('iter') == 5
    # weights, AdamW moments, LR schedule and data order all came back: same result as no interruption
    for name, value in weights(reference).items():
        torch.testing.assert_close(weights(resumed)[name], value, rtol=0, atol=1e-6)
    assert resumed.optim_wrapper.get_lr()['lr'] == pytest.approx([0.005])  # milestone 3 passed


@pytest.mark.slow
def test_auto_resume_picks_the_latest_checkpoint_in_the_work_dir(tmp_path):
    make_runner(tmp_path, 4, RecordIters()).train()  # iter_2.pth, iter_4.pth, last_checkpoint
    recorder = RecordIters()
    # what `tools/train.py --resume` (no value) sets: cfg.resume=True, load_from=None
    make_runner(tmp_path, 6, recorder, resume=True).train()
    assert recorder.trained == [4, 5]


class Payload:
    """A pickle that would create a directory when unpickled (stand-in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.mkdir, (self.marker, )


def test_arbitrary_pickles_are_still_refused(tmp_path):
    marker = str(tmp_path / 'code_was_run')
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': {'payload': Payload(marker)}}, evil)

    with pytest.raises(pickle.UnpicklingError):
        torch.load(evil)  # default after `import focalnet_mm`: still weights_only=True
    from mmengine.runner import CheckpointLoader
    with pytest.raises(pickle.UnpicklingError):
        CheckpointLoader.load_checkpoint(str(evil), map_location='cpu')  # what --resume/load_from use
    assert not osp.exists(marker)


@pytest.mark.slow
def test_without_focalnet_mm_torch_refuses_mmengine_checkpoints(tmp_path):
    """The fix is real: plain torch >= 2.6 cannot read what mmengine wrote."""
    if tuple(int(v) for v in torch.__version__.split('.')[:2]) < (2, 6):
        pytest.skip('torch < 2.6 loads full pickles by default')
    make_runner(tmp_path, 2, RecordIters()).train()
    code = ('import sys, pickle, torch\n'
            'try:\n    torch.load(sys.argv[1])\nexcept pickle.UnpicklingError:\n    sys.exit(3)\n')
    proc = subprocess.run([sys.executable, '-c', code, str(tmp_path / 'iter_2.pth')],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-1000:]
