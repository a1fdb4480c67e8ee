"""Issue 19 / 27: a killed or preempted training run keeps its progress.

A real SIGKILL in the middle of a checkpoint write leaves the previous checkpoint and
last_checkpoint intact; --resume skips a damaged newest checkpoint; SIGTERM in the middle of an
epoch (to the main process, or to the whole process group with 2 DataLoader workers), SIGTERM to
one of 2 ranks (both stop at the same iteration), and SIGTERM in mmengine's iteration loop (the
seg configs) each save that iteration, exit 0, and resume to bitwise the weights of an
uninterrupted run; a 2-process run whose surviving rank names the rank that died.

The end-to-end runs train a tiny FocalNet classifier (the 64x64 config with a 1-1-1-1 block
arch) on 16 generated 32x32 images, with a deterministic pipeline so that weights can be compared
exactly; a shuffled sampler and per-iteration plus per-epoch LR schedules make the data order and
the scheduler state matter. The in-process ones train a 3-parameter toy model.
"""
import multiprocessing
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

import focalnet_mm  # noqa: F401  (registers the hook and the loop)
from focalnet_mm.config.safe_training import make_training_safe
from focalnet_mm.engine import checkpoint_problem, find_resumable_checkpoint

from conftest import REPO_ROOT, free_port, load_tool

ITERS_PER_EPOCH = 8  # 16 images, batch 2, one process


def load_train_tool():
    return load_tool(osp.join('tools', 'train.py'), 'preemption_train_tool')


def tiny_config(path, data_root, max_epochs=3):
    path.write_text(f'''
_base_ = {osp.join(REPO_ROOT, 'configs', 'cls', 'focalnet_p4_e64_tinyimagenet_64x64.py')!r}
model = dict(
    backbone=dict(arch=dict(patch_size=4, embed_dim=16, depths=(1, 1, 1, 1), focal_levels=2,
                            focal_windows=3), drop_path_rate=0.0),
    head=dict(num_classes=4, in_channels=128),
    train_cfg=None)  # no Mixup/CutMix: a deterministic run
data_preprocessor = dict(num_classes=4)
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={str(data_root)!r},
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
val_dataloader = None
val_cfg = None
val_evaluator = None
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='MultiStepLR', by_epoch=True, milestones=[2], gamma=0.1),
]
train_cfg = dict(max_epochs={max_epochs})
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
randomness = dict(seed=0)
''')
    return str(path)


def train_tool_env():
    return dict(os.environ, PYTHONPATH=REPO_ROOT, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1',
                CUDA_VISIBLE_DEVICES='')


def state_dict(path):
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def assert_same_weights(actual, expected):
    """Bitwise: the same batches in the same order and the same optimizer / scheduler state give
    the same float operations (one thread per process; gloo's allreduce is deterministic)."""
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=0, msg=name)


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    """16 generated 32x32 images of 4 classes and the tiny config that trains on them."""
    root = tmp_path_factory.mktemp('preemption')
    make = load_tool(osp.join('tools', 'data', 'make_demo_imagenet.py'), 'preemption_make_imagenet')
    make.write_dataset(str(root / 'data'), classes=4, train_per_class=4, val_per_class=1, size=32)
    return dict(root=root, config=tiny_config(root / 'tiny.py', root / 'data'))


@pytest.fixture(scope='module')
def reference(tiny_data):
    """An uninterrupted 3-epoch run (epoch_1..3.pth) and its final weights."""
    work_dir = tiny_data['root'] / 'reference'
    load_train_tool().main([tiny_data['config'], '--work-dir', str(work_dir)])
    return dict(tiny_data, work_dir=work_dir, weights=state_dict(work_dir / 'epoch_3.pth'))


# ----------------------------------------------------------------------------- fast unit tests
class _Toy(BaseModel):
    def __init__(self, payload_mb=0):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)
        # a large constant buffer: the checkpoint's size, so that its write takes a while
        self.register_buffer('payload', torch.zeros(payload_mb << 18))

    def forward(self, inputs, mode='tensor'):
        return dict(loss=(self.linear(inputs) - inputs.sum(1, keepdim=True)).pow(2).mean())


class _SignalAt(Hook):
    """Sends ``signum`` to this process after iteration ``at`` (0-based), as a scheduler would."""
    priority = 'HIGHEST'

    def __init__(self, at, signum):
        self.at, self.signum = at, signum

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter == self.at:
            os.kill(os.getpid(), self.signum)


EPOCH_LOOP = dict(type='ResumableEpochBasedTrainLoop', max_epochs=3)
#: what the seg configs train with: mmengine's own iteration loop, an infinite shuffled sampler,
#: checkpoints every `interval` iterations and an iteration-based LR schedule
ITER_LOOP = dict(train_cfg=dict(type='IterBasedTrainLoop', max_iters=12),
                 sampler=dict(type='InfiniteSampler', shuffle=True),
                 checkpoint=dict(by_epoch=False, interval=5),
                 param_scheduler=dict(type='MultiStepLR', by_epoch=False, milestones=[9], gamma=0.1))


def toy_runner(work_dir, name, max_keep_ckpts=-1, resume=False, hooks=(), payload_mb=0,
               load_from=None, train_cfg=EPOCH_LOOP, sampler=None, checkpoint=None,
               param_scheduler=None, num_workers=0):
    """By default 4 iterations per epoch, a shuffled sampler, 3 epochs, no loader workers
    (``num_workers`` > 0: persistent ones)."""
    torch.manual_seed(0)
    data = [dict(inputs=x) for x in torch.randn(8, 2, generator=torch.Generator().manual_seed(0))]
    return Runner(model=_Toy(payload_mb), work_dir=str(work_dir), experiment_name=name,
                  train_dataloader=dict(dataset=data,
                                        sampler=sampler or dict(type='DefaultSampler', shuffle=True),
                                        batch_size=2, collate_fn=dict(type='default_collate'),
                                        num_workers=num_workers, persistent_workers=num_workers > 0),
                  optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
                  param_scheduler=param_scheduler, train_cfg=train_cfg,
                  default_hooks=dict(checkpoint=dict(dict(type='SafeCheckpointHook', interval=1,
                                                          max_keep_ckpts=max_keep_ckpts),
                                                     **(checkpoint or {}))),
                  custom_hooks=list(hooks), randomness=dict(seed=0), resume=resume,
                  load_from=load_from, default_scope='mmengine')


def assert_same_parameters(actual, expected):
    """Bitwise: the same data order, optimizer and scheduler state give the same float ops."""
    expected = dict(expected.named_parameters())
    actual = dict(actual.named_parameters())
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=0, msg=name)


KILLED_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_preemption import toy_runner
toy_runner({work_dir!r}, 'killed_child', max_keep_ckpts=1, payload_mb={payload_mb}).train()
"""


@pytest.mark.slow
def test_sigkill_during_the_checkpoint_write_keeps_the_previous_one_and_resumes(tmp_path):
    """A real SIGKILL while mmengine's save_checkpoint writes a 160 MB state through
    SafeCheckpointHook (max_keep_ckpts=1): the newest checkpoint is the previous complete one,
    never a truncated file, and the resume from it reaches the uninterrupted weights."""
    work_dir, payload_mb = tmp_path / 'work', 160
    tmp = work_dir / '.epoch_2.pth.tmp'  # where atomic_write puts epoch_2.pth while writing it
    child = subprocess.Popen(
        [sys.executable, '-c', KILLED_CHILD.format(tests=osp.dirname(__file__),
                                                   work_dir=str(work_dir), payload_mb=payload_mb)],
        cwd=REPO_ROOT, env=train_tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        size = 0
        while size == 0:  # the write of epoch_2.pth has begun: kill the job, as preemption does
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()[-3000:]
            try:
                size = tmp.stat().st_size
            except FileNotFoundError:
                time.sleep(0.001)
        child.kill()
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        child.kill()
        child.stderr.close()
    complete = (work_dir / 'epoch_1.pth').stat().st_size
    print(f'killed after {size} of ~{complete} bytes of epoch_2.pth were written')
    # killed before the rename: what was being written is only the temporary file
    assert tmp.is_file() and not (work_dir / 'epoch_2.pth').exists()
    # the previous checkpoint was not removed first (max_keep_ckpts=1) and reads back
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['epoch_1.pth']
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'epoch_1.pth')
    assert checkpoint_problem(str(work_dir / 'epoch_1.pth')) is None
    path, skipped = find_resumable_checkpoint(str(work_dir))
    assert path == str(work_dir / 'epoch_1.pth') and skipped == []

    reference = toy_runner(tmp_path / 'reference', 'sigkill_reference')
    reference.train()
    resumed = toy_runner(work_dir, 'sigkill_resumed', max_keep_ckpts=1, payload_mb=payload_mb,
                         resume=True, load_from=path)
    resumed.train()
    assert_same_parameters(resumed.model, reference.model)
    # the temporary file was written again and renamed; only the newest checkpoint is kept
    assert sorted(p.name for p in work_dir.iterdir() if 'pth' in p.name) == ['epoch_3.pth']


def test_sigusr1_after_the_last_batch_of_an_epoch_resumes_with_that_epochs_end(tmp_path):
    """The stop checkpoint holds the epoch's last iteration; the resumed run first saves the
    epoch's checkpoint, then trains on, to the same weights as an uninterrupted run."""
    handler = signal.getsignal(signal.SIGUSR1)
    reference = toy_runner(tmp_path / 'reference', 'usr1_reference')
    reference.train()
    stopped = toy_runner(tmp_path / 'run', 'usr1_stopped', hooks=[_SignalAt(7, signal.SIGUSR1)])
    stopped.train()  # returns normally
    assert stopped.iter == 8 and stopped.epoch == 1  # epoch 2 trained, its end not run
    saved = sorted(p for p in os.listdir(tmp_path / 'run') if p.endswith('.pth'))
    assert saved == ['epoch_1.pth', 'iter_8.pth']
    assert (tmp_path / 'run' / 'stopped_by_signal').read_text() == f'{tmp_path}/run/iter_8.pth\n'
    assert signal.getsignal(signal.SIGUSR1) == handler  # restored after training

    resumed = toy_runner(tmp_path / 'run', 'usr1_resumed', resume=True)
    resumed.train()
    files = sorted(os.listdir(tmp_path / 'run'))
    assert [p for p in files if p.endswith('.pth')] == ['epoch_1.pth', 'epoch_2.pth', 'epoch_3.pth']
    assert 'stopped_by_signal' not in files  # the new run cleared the stop marker
    for name, value in reference.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=0)


def test_sigterm_in_an_iteration_loop_saves_that_iteration_and_resumes_to_the_same_weights(tmp_path):
    """mmengine's IterBasedTrainLoop (the seg configs): the stop checkpoint iter_7.pth sits
    between the regular iter_5 / iter_10 ones; the resumed run advances the infinite sampler past
    the 7 trained batches, removes iter_7.pth once iter_10.pth is complete, and ends bitwise equal
    to an uninterrupted run (data order, momentum and the LR milestone all carried over)."""
    reference = toy_runner(tmp_path / 'reference', 'iter_reference', **ITER_LOOP)
    reference.train()
    run = tmp_path / 'run'
    stopped = toy_runner(run, 'iter_stopped', hooks=[_SignalAt(6, signal.SIGTERM)], **ITER_LOOP)
    stopped.train()  # returns normally
    assert stopped.iter == 7
    assert sorted(p.name for p in run.glob('*.pth')) == ['iter_5.pth', 'iter_7.pth']
    assert (run / 'stopped_by_signal').read_text() == f'{run}/iter_7.pth\n'
    assert (run / 'last_checkpoint').read_text() == f'{run}/iter_7.pth'
    assert torch.load(run / 'iter_7.pth', weights_only=True)['meta']['iter'] == 7

    # what a SIGKILL during a stop checkpoint's write leaves (its name is never written again)
    (run / '.iter_8.pth.tmp').write_bytes(b'PK partial')
    (run / '.notes.tmp').write_text('not a checkpoint: kept')
    resumed = toy_runner(run, 'iter_resumed', resume=True, **ITER_LOOP)
    resumed.train()
    assert resumed.iter == 12
    assert sorted(p.name for p in run.glob('*.pth')) == ['iter_10.pth', 'iter_12.pth', 'iter_5.pth']
    assert sorted(p.name for p in run.glob('.*.tmp')) == ['.notes.tmp']
    assert_same_parameters(resumed.model, reference.model)
    assert resumed.optim_wrapper.get_lr()['lr'] == pytest.approx([0.01])  # after the milestone


def test_a_run_that_ends_ends_its_persistent_loader_workers(tmp_path):
    """The loader workers ignore SIGTERM (a stop signal is the main process's to handle), and
    persistent ones outlive each epoch: left running, multiprocessing's join at exit would wait for
    them forever (a finished run that never exits)."""
    before = set(multiprocessing.active_children())
    runner = toy_runner(tmp_path, 'workers_end', train_cfg=dict(EPOCH_LOOP, max_epochs=2), num_workers=2)
    runner.train()
    assert runner.epoch == 2
    left = [p for p in multiprocessing.active_children() if p not in before]
    assert left == [], f'loader workers still running after training: {left}'


def test_resume_checks_the_file_and_names_what_it_skips(tmp_path):
    good, cut = tmp_path / 'epoch_1.pth', tmp_path / 'epoch_2.pth'
    torch.save({'state_dict': {'w': torch.arange(10000.)}, 'meta': {'epoch': 1}}, good)
    torch.save({'state_dict': {'w': torch.arange(10000.)}, 'meta': {'epoch': 2}}, cut)
    cut.write_bytes(cut.read_bytes()[:cut.stat().st_size // 2])
    os.utime(good, (1, 1))  # older than the cut one
    (tmp_path / 'last_checkpoint').write_text(str(cut))
    assert checkpoint_problem(str(good)) is None
    assert checkpoint_problem(str(cut)).startswith('truncated or damaged: ')
    path, skipped = find_resumable_checkpoint(str(tmp_path))
    assert path == str(good) and [p for p, _ in skipped] == [str(cut)]

    cfg = Config(dict(work_dir=str(tmp_path), train_cfg=dict(by_epoch=True, max_epochs=3)))
    make_training_safe(cfg, 'auto')
    assert cfg.resume is True and cfg.load_from == str(good)
    with pytest.raises(ValueError, match=rf'--resume {cut} cannot be read back \(truncated or damaged: .*\); '
                       rf'the newest readable one next to it is {good}'):
        make_training_safe(Config(dict(work_dir=str(tmp_path))), str(cut))

    good.write_bytes(b'')  # none readable: one line naming every file tried
    with pytest.raises(FileNotFoundError, match=rf'no readable checkpoint in {tmp_path}: tried '
                       rf'{cut} \(.*\); {good} \(.*\)'):
        make_training_safe(Config(dict(work_dir=str(tmp_path))), 'auto')
    empty = tmp_path / 'fresh'
    cfg = Config(dict(work_dir=str(empty)))
    make_training_safe(cfg, 'auto')  # nothing there yet: a fresh start
    assert cfg.resume is True and cfg.load_from is None


@pytest.mark.parametrize('config, loop', [
    ('configs/maskrcnn_focalnet_t_3x.py', 'ResumableEpochBasedTrainLoop'),
    ('configs/seg/upernet_focalnet_t_srf_512x512_160k_ade20k.py', 'IterBasedTrainLoop'),
    ('configs/cls/focalnet_t_srf_in1k.py', 'ResumableEpochBasedTrainLoop'),
])
def test_every_config_trains_with_the_safe_hook_and_a_timeout(config, loop):
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    keep = cfg.default_hooks.checkpoint.get('max_keep_ckpts')
    make_training_safe(cfg)
    assert cfg.default_hooks.checkpoint.type == 'SafeCheckpointHook'
    assert cfg.default_hooks.checkpoint.get('max_keep_ckpts') == keep  # arguments untouched
    assert cfg.train_cfg.type == loop
    assert cfg.env_cfg.dist_cfg.timeout == 900
    assert not cfg.get('resume')


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_a_checkpoint_cut_in_half_falls_back_to_the_previous_one(reference, tmp_path, capfd):
    work_dir = tmp_path / 'work'
    shutil.copytree(reference['work_dir'], work_dir)
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_3.pth'))
    newest = work_dir / 'epoch_3.pth'
    newest.write_bytes(newest.read_bytes()[:newest.stat().st_size // 2])  # a kill during a plain write
    from mmengine.logging import MMLogger
    MMLogger.get_instance('cut_in_half_test')  # the process' current logger, as in a fresh CLI run
    capfd.readouterr()
    runner = load_train_tool().main([reference['config'], '--work-dir', str(work_dir), '--resume'])
    out = capfd.readouterr()
    log = out.out + out.err
    assert len(re.findall(rf'--resume: skipping {newest}, which cannot be read back', log)) == 1, log[-3000:]
    assert 'resumed epoch: 2, iter: 16' in log
    assert_same_weights(runner.model.state_dict(), reference['weights'])
    assert checkpoint_problem(str(newest)) is None  # written again, completely


@pytest.mark.slow
@pytest.mark.parametrize('workers', [0, 2])
def test_sigterm_mid_epoch_saves_that_iteration_exits_0_and_resumes_to_the_same_weights(
        reference, tmp_path, workers):
    """With workers=2 the signal goes to the whole process group, as a scheduler sends it (the
    DataLoader workers get it too); training still stops cleanly and no worker is left behind."""
    work_dir = tmp_path / 'work'
    loader = ['--cfg-options', f'train_dataloader.num_workers={workers}',
              f'train_dataloader.persistent_workers={bool(workers)}']
    proc = subprocess.Popen([sys.executable, 'tools/train.py', reference['config'], '--work-dir',
                             str(work_dir), *loader], cwd=REPO_ROOT, env=train_tool_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group, workers included
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if re.search(r'Epoch\(train\)\s+\[2\]\[2/8\]', line):
                # what a scheduler sends when it preempts: to the job's processes
                if workers:
                    os.killpg(proc.pid, signal.SIGTERM)
                else:
                    proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, ''.join(lines)[-3000:]
        deadline = time.monotonic() + 10
        while True:  # the workers ended with the main process (none ignores SIGTERM forever)
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, 'DataLoader workers outlived the stopped run'
            time.sleep(0.1)
    finally:
        kill_session(proc)
    log = ''.join(lines)
    stop = re.search(r'SIGTERM received: stopped after epoch 2, iteration (\d)/8 and saved '
                     r'(\S+iter_(\d+)\.pth)\. '
                     r'Continue with: python tools/train.py \S+ --work-dir \S+ --resume', log)
    assert stop, log[-3000:]
    done_in_epoch, saved, done = int(stop[1]), stop[2], int(stop[3])
    assert 2 <= done_in_epoch < ITERS_PER_EPOCH and done == ITERS_PER_EPOCH + done_in_epoch
    meta = torch.load(saved, map_location='cpu', weights_only=True)['meta']
    assert (meta['epoch'], meta['iter']) == (1, done)  # in epoch 2 (index 1), after `done` iterations
    assert not (work_dir / 'epoch_2.pth').exists() and 'Traceback' not in log
    assert (work_dir / 'last_checkpoint').read_text() == saved

    runner = load_train_tool().main([reference['config'], '--work-dir', str(work_dir), '--resume',
                                     *loader])
    # the same batches in the same order, whichever process loaded them: bitwise the same
    assert_same_weights(runner.model.state_dict(), reference['weights'])
    assert not osp.exists(saved)  # superseded by epoch_2.pth, then removed
    assert (work_dir / 'epoch_3.pth').is_file()


def kill_session(proc):
    """SIGKILL to every process of ``proc``'s session (started with ``start_new_session=True``),
    if any is left."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start_ranks(config, work_dir, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
    """tools/train.py on 2 CPU processes with gloo, one per rank (what torchrun/srun start)."""
    port, ranks = free_port(), []
    for rank in range(2):
        env = dict(train_tool_env(), MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), WORLD_SIZE='2',
                   RANK=str(rank), LOCAL_RANK=str(rank))
        ranks.append(subprocess.Popen(
            [sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir), '--launcher',
             'pytorch', *args], cwd=REPO_ROOT, env=env, text=True,
            stdout=stdout, stderr=stderr if rank == 0 else subprocess.STDOUT))
    return ranks


#: ``python -c FORKED_RANKS TOOL ARGS... RANK1_LOG``: TOOL run as __main__ by 2 ranks forked from
#: one interpreter after it imported the stack (a fresh interpreter imports it for seconds); rank 1
#: writes its output to RANK1_LOG, rank 0 waits for it and fails if it failed
FORKED_RANKS = """
import os, runpy, sys
# what a run of the tiny classifier config imports, as it imports them
import torch, mmengine.runner, focalnet_mm, focalnet_mm.runner_building  # noqa: F401
import mmpretrain.datasets.transforms, mmpretrain.models  # noqa: F401
import matplotlib.figure, matplotlib.backends.backend_agg  # noqa: F401
tool, argv, rank1_log = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
sys.stdout.flush(), sys.stderr.flush()
child = os.fork()
rank = 1 if child == 0 else 0
os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank))
if rank == 1:
    log = os.open(rank1_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1), os.dup2(log, 2)
sys.argv, code = [tool, *argv], 1
try:
    runpy.run_path(tool, run_name='__main__')
    code = 0
except SystemExit as stop:
    code = stop.code
finally:
    if rank == 0:
        status = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
        if status != 0:
            print(f'rank 1 exited with {status}:', open(rank1_log).read()[-3000:], flush=True)
            code = code or 1
sys.exit(code)
"""


def run_ranks(config, work_dir, *args, timeout=240):
    """Both ranks of tools/train.py to the end, forked from one interpreter (:data:`FORKED_RANKS`):
    what these runs give is their checkpoints and rank 0's log, not how their processes start
    (:func:`start_ranks` starts the runs whose processes are signalled). Returns rank 0's output
    (its stdout and stderr together)."""
    env = dict(train_tool_env(), MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()),
               WORLD_SIZE='2')
    proc = subprocess.Popen(
        [sys.executable, '-c', FORKED_RANKS, 'tools/train.py', config, '--work-dir', str(work_dir),
         '--launcher', 'pytorch', *args, f'{work_dir}_rank1.log'], cwd=REPO_ROOT, env=env,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out = proc.communicate(timeout=timeout)[0]
    finally:
        kill_session(proc)  # rank 1 too, if rank 0 did not wait for it
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_both_at_the_same_iteration_and_resumes_to_the_same_weights(
        tiny_data, tmp_path):
    """Only rank 1 is signalled; the ranks agree (an all_reduce after every iteration), rank 0
    saves that iteration, both exit 0, and a 2-rank resume ends bitwise equal to an
    uninterrupted 2-rank run. 2 ranks x batch 2 over 16 images: 4 iterations per epoch."""
    config, two_epochs = tiny_data['config'], ('--cfg-options', 'train_cfg.max_epochs=2')
    reference = tmp_path / 'reference'
    run_ranks(config, reference, *two_epochs)

    work_dir = tmp_path / 'work'
    ranks = start_ranks(config, work_dir, *two_epochs, stderr=subprocess.STDOUT)
    lines = []
    try:
        for line in ranks[0].stdout:  # only rank 0 logs below ERROR
            lines.append(line)
            if re.search(r'Epoch\(train\)\s+\[2\]\[1/4\]', line):
                ranks[1].send_signal(signal.SIGTERM)
        codes = [ranks[0].wait(timeout=120), ranks[1].wait(timeout=60)]
        rank1 = ranks[1].communicate()[0]
    finally:
        for proc in ranks:
            proc.kill()
    log = ''.join(lines)
    assert codes == [0, 0], log[-3000:] + rank1[-3000:]
    stop = re.search(r'SIGTERM received: stopped after epoch 2, iteration (\d)/4 and saved '
                     r'(\S+iter_(\d+)\.pth)\.', log)
    assert stop, log[-3000:]
    saved, done = stop[2], int(stop[3])
    assert 1 <= int(stop[1]) < 4 and done == 4 + int(stop[1])
    assert (work_dir / 'stopped_by_signal').read_text() == f'{saved}\n'
    assert torch.load(saved, map_location='cpu', weights_only=True)['meta']['iter'] == done
    assert not (work_dir / 'epoch_2.pth').exists() and 'Traceback' not in log + rank1

    resumed = run_ranks(config, work_dir, '--resume', *two_epochs)
    assert f'resumed epoch: 1, iter: {done}' in resumed
    assert_same_weights(state_dict(work_dir / 'epoch_2.pth'), state_dict(reference / 'epoch_2.pth'))
    assert not osp.exists(saved)


@pytest.mark.slow
def test_a_killed_rank_is_named_by_the_survivor_and_the_last_checkpoint_resumes(tiny_data, tmp_path):
    # a long timeout: the survivor must learn of the death from the closed connection, not wait
    work_dir, timeout = tmp_path / 'work', 300
    config = tiny_config(tmp_path / 'long.py', tiny_data['root'] / 'data', max_epochs=100)
    ranks = start_ranks(config, work_dir, '--cfg-options', f'env_cfg.dist_cfg.timeout={timeout}')
    try:
        deadline = time.time() + 240
        while not (work_dir / 'last_checkpoint').exists():  # epoch 1 is saved: kill rank 1
            assert time.time() < deadline and ranks[0].poll() is None, ranks[0].communicate()[1][-3000:]
            time.sleep(0.05)
        ranks[1].kill()
        killed_at = time.time()
        _, err = ranks[0].communicate(timeout=timeout + 30)
        survivor_seconds = time.time() - killed_at
    finally:
        for proc in ranks:
            proc.kill()
    assert ranks[0].returncode != 0
    last = err.strip().splitlines()[-1]
    assert re.match(r'error: rank 0 of 2: rank 1 stopped responding; training stopped '
                    rf'\(timeout {timeout} s\)\. Cause: .+\. Continue from the last complete checkpoint '
                    r'with --resume\.$', last), err[-3000:]
    assert survivor_seconds < timeout, survivor_seconds  # not by the process group timeout
    print(f'survivor exited {survivor_seconds:.1f}s after the kill: {last}')

    latest, skipped = find_resumable_checkpoint(str(work_dir))
    assert skipped == [] and re.search(r'epoch_\d+\.pth$', latest)
    epoch = torch.load(latest, map_location='cpu', weights_only=True)['meta']['epoch']
    runner = load_train_tool().main([config, '--work-dir', str(work_dir), '--resume',
                                     '--cfg-options', f'train_cfg.max_epochs={epoch + 1}'])
    assert runner.train_loop.epoch == epoch + 1
    assert (work_dir / f'epoch_{epoch + 1}.pth').is_file()


def test_slurm_train_requests_the_signal_and_requeue_and_resumes_a_requeued_job(tmp_path):
    """tools/slurm_train.sh with stand-ins for sbatch/srun/scontrol that record their arguments."""
    stubs, calls = tmp_path / 'bin', tmp_path / 'calls'
    stubs.mkdir()
    for name in ('sbatch', 'srun', 'scontrol'):
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        (stubs / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(('SLURM_', 'FOCALNET_SLURM'))}
    env.update(PATH=f'{stubs}:{os.environ["PATH"]}', GPUS='2')
    work_dir = tmp_path / 'work'

    def run(**extra):
        calls.write_text('')
        proc = subprocess.run(['bash', 'tools/slurm_train.sh', 'gpu', 'focalnet', 'CONFIG.py',
                               str(work_dir), '--amp'], cwd=REPO_ROOT, env=dict(env, **extra),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return calls.read_text().splitlines()

    (sbatch, ) = run()  # from a login node: a requeueable batch job warned before its time limit
    assert sbatch.startswith('sbatch -p gpu --job-name=focalnet --gres=gpu:2 --ntasks=2 ')
    assert ' --requeue --signal=USR1@180 ' in sbatch and f'--output={work_dir}/slurm-%j.out' in sbatch
    assert sbatch.endswith(f'tools/slurm_train.sh gpu focalnet CONFIG.py {work_dir} --amp')

    batch = dict(SLURM_JOB_ID='42', FOCALNET_SLURM_BATCH='1')
    (srun, ) = run(**batch)  # the first run of the job
    assert srun.endswith(f'tools/train.py CONFIG.py --work-dir={work_dir} --launcher=slurm --amp')
    (work_dir / 'stopped_by_signal').write_text(f'{work_dir}/iter_7.pth\n')
    srun, requeue = run(**batch, SLURM_RESTART_COUNT='1')  # requeued, and stopped again
    assert srun.endswith('--launcher=slurm --amp --resume')
    assert requeue == 'scontrol requeue 42'


def _last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ''


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_stop_on_one_rank_ends_both_with_its_line_whatever_the_workers(tiny_data, tmp_path):
    """An unreadable image stops the rank that loads it (skip_bad_samples.max_count=0) in a
    DataLoader worker that is a new process each epoch (num_workers=1, not persistent: the case
    where the stopping rank used to wait at exit for its worker and its peer in all_reduce until
    the 900 s timeout). Both ranks exit non-zero within seconds: the stopping rank with its line,
    the other with the same line naming that rank."""
    data = tmp_path / 'data'
    shutil.copytree(tiny_data['root'] / 'data', data)
    broken = sorted((data / 'train').glob('*/*.JPEG'))[5]
    broken.write_bytes(broken.read_bytes()[:100])
    config = tiny_config(tmp_path / 'broken.py', data, max_epochs=2)
    ranks = start_ranks(config, tmp_path / 'work', '--cfg-options', 'train_dataloader.num_workers=1',
                        'train_dataloader.persistent_workers=False', 'skip_bad_samples.max_count=0')
    try:  # rank 0's stderr; rank 1's stdout and stderr together (it logs errors only)
        outputs = [ranks[0].communicate(timeout=120)[1], ranks[1].communicate(timeout=30)[0]]
    finally:
        for proc in ranks:
            proc.kill()
    codes = [proc.returncode for proc in ranks]
    assert all(code not in (0, None) for code in codes), (codes, [o[-2000:] for o in outputs])
    stop = rf'1 of 16 samples \(6\.2%\) cannot be loaded, more than skip_bad_samples\.max_count=0 ' \
           rf'allows \(max_share=0\.01 of 16 would allow 0\); the last: \S+{broken.name} '
    last = [_last_line(out) for out in outputs]
    stopping = [r for r in range(2) if re.match(rf'error: {stop}', last[r])]
    assert len(stopping) == 1, last
    other = 1 - stopping[0]
    assert re.match(rf'error: rank {stopping[0]} of 2 stopped the run: {stop}', last[other]), last
    assert 'Traceback' not in outputs[0] + outputs[1]


#: rank 0; rank 1 is forked from it after the imports (a second interpreter would import them
#: again), writes only its 'ready' line to rank 0's output, and ends once rank 0 has ended
STUCK_RANK = """
import os, sys, time
from types import SimpleNamespace
import torch, torch.distributed as dist
from focalnet_mm.engine import SafeCheckpointHook
rank0 = os.getpid()
rank = 1 if os.fork() == 0 else 0
os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank))
if rank == 1:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
dist.init_process_group('gloo')
if dist.get_rank() == 1:  # alive, but never in the collective (a rank hung elsewhere)
    print('ready', os.getpid(), flush=True)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    deadline = time.monotonic() + 300
    while os.getppid() == rank0 and time.monotonic() < deadline:
        time.sleep(0.1)
    os._exit(0)
hook = SafeCheckpointHook(interval=1, stuck_signal_s=2)
hook._install_signal_handlers(SimpleNamespace(train_loop=SimpleNamespace(dataloader=[])))
print('ready', os.getpid(), flush=True)
dist.all_reduce(torch.ones(1))  # waits for rank 1 until the process group timeout
"""


def start_stuck_ranks(ready_within=60):
    """Rank 0 of :data:`STUCK_RANK` (its own session) and the PIDs of both ranks once both said
    'ready'. Other lines on stdout are kept for the failure message; ranks that are not ready
    within ``ready_within`` s are killed, so a failure reads their stderr instead of hanging. A
    second try on a new port if another process took it meanwhile (as ``conftest.dist_train``)."""
    for attempt in range(2):
        env = dict(train_tool_env(), MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()),
                   WORLD_SIZE='2')
        rank0 = subprocess.Popen([sys.executable, '-c', STUCK_RANK], cwd=REPO_ROOT, env=env,
                                 text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 start_new_session=True)
        watchdog = threading.Timer(ready_within, kill_session, (rank0, ))
        watchdog.start()
        ready, other = set(), []
        try:
            for line in rank0.stdout:  # both ranks write 'ready PID' to it, in either order
                words = line.split()
                if words[:1] != ['ready']:
                    other.append(line)
                    continue
                ready.add(int(words[1]))
                if len(ready) == 2:
                    return rank0, ready
        finally:
            watchdog.cancel()
        kill_session(rank0)
        err = rank0.communicate()[1]
        if attempt or 'address already in use' not in err.lower():
            pytest.fail(f'ranks not ready (ready: {sorted(ready)}); other output: {other[-5:]}; '
                        f'stderr: {err[-2000:]}')


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_sigterm_ends_a_rank_stuck_in_a_collective():
    """Python runs a signal handler only between bytecodes, never inside a collective that waits
    for a rank that does not come: the stop flag would wait for the process group timeout. The
    rank ends itself with one line once the handler has not run for stuck_signal_s seconds."""
    rank0, ready = start_stuck_ranks()
    try:
        assert rank0.pid in ready and len(ready) == 2, ready
        time.sleep(1)  # rank 0 is in all_reduce
        rank0.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        _, err = rank0.communicate(timeout=60)
        seconds = time.monotonic() - sent
    finally:
        rank0.kill()  # rank 1 ends by itself once rank 0 has ended
        rank0.wait()
    assert rank0.returncode == 1, err[-2000:]
    assert re.match(r'error: rank 0 of 2: SIGTERM received while the main thread has been blocked '
                    r'for 2 s in all_reduce \(distributed_c10d\.py\).*: stopped without saving\. '
                    r'Continue from the last complete checkpoint with --resume\.$', _last_line(err)), err
    print(f'rank 0 ended {seconds:.1f}s after SIGTERM')
