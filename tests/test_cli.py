"""tools/train.py, tools/test.py and tools/dist_train.sh as a user meets them: one-line errors
before any model is built, and a 2-process CPU (gloo) run."""
import json
import os.path as osp
import re
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT, dist_train, load_tool

MAIN_CONFIG = 'configs/maskrcnn_focalnet_t_3x.py'
DEMO_CONFIG = 'configs/demo/maskrcnn_focalnet_t_demo.py'


def run_tool(*args, timeout=300, env=None):
    start = time.time()
    proc = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)
    return proc, time.time() - start


def assert_one_line_error(proc, *fragments):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines, proc.stdout[-2000:]
    assert lines[-1].startswith('error: '), proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


@pytest.mark.slow  # tools/train.py in a subprocess: the quick loop checks the same errors in-process
def test_missing_coco_fails_in_one_line_naming_layout_and_readme_before_building(tmp_path):
    work_dir = tmp_path / 'work_dir'
    proc, seconds = run_tool('tools/train.py', MAIN_CONFIG, '--work-dir', str(work_dir),
                             '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path}/coco/')
    line = assert_one_line_error(
        proc, f'{tmp_path}/coco/annotations/instances_train2017.json not found for train_dataloader',
        'annotations/instances_{train,val}2017.json', 'docs/training.md "Data preparation"', '--cfg-options')
    assert line.count('\n') == 0
    # nothing was built: the Runner creates the work dir and logs the environment first
    assert not work_dir.exists()
    assert 'System environment' not in proc.stdout + proc.stderr
    print(f'missing data reported in {seconds:.1f}s')  # imports only: nothing was built (above)


def tool_error(tool, *argv):
    """The one-line error of ``tool.main(argv)`` run in this process (from the repository root,
    as the README runs it): what ``sys.exit`` would print to stderr, exit status 1. Cheaper than a
    subprocess per case; the subprocess test above checks what a user's terminal shows."""
    with pytest.raises(SystemExit) as exited:
        tool.main(list(argv))
    line = exited.value.code
    assert isinstance(line, str) and line.startswith('error: ') and '\n' not in line, line
    return line


@pytest.fixture
def tools(monkeypatch):
    """tools/train.py and tools/test.py as modules, run from the repository root."""
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv('LOCAL_RANK', '0')  # parse_args sets it when absent: keep it test-local
    return load_tool('tools/train.py'), load_tool('tools/test.py')


def test_missing_demo_data_names_its_generator(tmp_path, tools):
    train, _ = tools
    line = tool_error(train, DEMO_CONFIG, '--work-dir', str(tmp_path / 'w'),
                      '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path}/demo/')
    assert 'instances_train.json not found' in line and 'python tools/data/make_demo_coco.py' in line
    assert not (tmp_path / 'w').exists()  # refused before the Runner made its work dir


def test_test_tool_errors(tmp_path, tools):
    train, test = tools
    assert 'missing.pth not found' in tool_error(test, MAIN_CONFIG, str(tmp_path / 'missing.pth'))
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    assert 'instances_val2017.json not found for test_dataloader' in tool_error(
        test, MAIN_CONFIG, str(checkpoint), '--cfg-options',
        f'test_dataloader.dataset.data_root={tmp_path}/coco/')
    assert 'configs/no_such_config.py not found' in tool_error(train, 'configs/no_such_config.py')
    line = tool_error(train, MAIN_CONFIG, '--resume', str(tmp_path / 'none.pth'))
    assert '--resume' in line and 'none.pth: no such checkpoint file' in line


def test_cli_flags_reach_the_config(tmp_path, monkeypatch):
    """--amp, --auto-scale-lr, --resume and --work-dir set what mmdet's tools set."""
    import torch
    train = load_tool('tools/train.py')
    data_root = tmp_path / 'coco'
    for sub in ('annotations', 'train2017', 'val2017'):
        (data_root / sub).mkdir(parents=True)
    from mmdet.datasets import CocoDataset
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(CocoDataset.METAINFO['classes'])]
    for split in ('train', 'val'):  # the class-order check reads the categories only
        (data_root / 'annotations' / f'instances_{split}2017.json').write_text(
            json.dumps(dict(categories=categories)))
    options = ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}/',
               f'val_dataloader.dataset.data_root={data_root}/',
               f'test_dataloader.dataset.data_root={data_root}/']
    if not torch.cuda.is_available():  # --amp needs a GPU: one line naming the fix
        with pytest.raises(ValueError, match='no CUDA GPU: drop --amp'):
            train.make_config(train.parse_args([osp.join(REPO_ROOT, MAIN_CONFIG), '--amp', *options]))
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)  # what it sets on a GPU
        monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '0')  # mmengine's logger asks for the device id
    cfg = train.make_config(train.parse_args([osp.join(REPO_ROOT, MAIN_CONFIG), '--amp', '--auto-scale-lr',
                                              '--resume', *options]))
    # mmengine's AmpOptimWrapper with the non-finite loss guard (focalnet_mm/engine/nonfinite.py)
    assert cfg.optim_wrapper.type == 'FiniteAmpOptimWrapper' and cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.auto_scale_lr.enable is True and cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.work_dir == './work_dirs/maskrcnn_focalnet_t_3x'
    assert cfg.optim_wrapper.optimizer.lr == 1e-4  # the official value, untouched
    monkeypatch.undo()
    cfg = train.make_config(train.parse_args([osp.join(REPO_ROOT, MAIN_CONFIG), '--work-dir', 'elsewhere',
                                              *options]))
    assert cfg.work_dir == 'elsewhere' and not cfg.get('resume')
    assert cfg.optim_wrapper.type == 'FiniteOptimWrapper'


@pytest.mark.slow
def test_dist_train_two_cpu_processes(tmp_path):
    """tools/dist_train.sh CONFIG 2 on a machine without GPUs: gloo, CPU DDP, sharded data.
    The demo's Mask R-CNN with one block per backbone stage: DDP, gloo and the sampler's
    sharding do not depend on the number of blocks (the demo data is written in-process: its
    command line is not what is tested here)."""
    load_tool('tools/data/make_demo_coco.py', 'cli_make_demo_coco').make_demo_coco(
        str(tmp_path / 'data'), num_train=4, num_val=2, size=96)
    config = tmp_path / 'dist_demo.py'
    config.write_text(f'''
_base_ = {osp.join(REPO_ROOT, DEMO_CONFIG)!r}
data_root = {str(tmp_path / 'data') + '/'!r}
image_scale = (96, 64)
model = dict(backbone=dict(depths=[1, 1, 1, 1]))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
''')
    start = time.time()
    proc = dist_train([str(config), '2', '--work-dir', str(tmp_path / 'work_dir')], timeout=400)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert re.search(r'Distributed training: True', output)
    assert re.search(r'world size 2 \(gloo\)', output), output[-3000:]
    # 4 images / (2 processes x batch 1) = 2 iterations per process; alone it would be 4
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', output), output[-3000:]
    assert not re.search(r'\[\d+/4\]', output)
    assert (tmp_path / 'work_dir' / 'epoch_1.pth').is_file()
    print(f'2-process CPU run took {time.time() - start:.0f}s')


def test_each_runner_in_a_process_gets_a_visualizer_of_its_own(tmp_path):
    """mmengine looks visualizers up by name: a second runner in one process (tools called
    in-process) would get the first one's, with its class and save_dir. The runners' default
    scope is dropped afterwards (later modules build with their own)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    from test_runner_resume import ToyRegressor

    from focalnet_mm.runner_building import build_runner_from_cfg
    MODELS.register_module('ToyRegressor', module=ToyRegressor, force=True)
    with DefaultScope.overwrite_default_scope('mmengine'):
        runners = [build_runner_from_cfg(Config(dict(
            model=dict(type='ToyRegressor'), work_dir=str(tmp_path / name), experiment_name=name,
            default_scope='mmengine', launcher='none',
            visualizer=dict(type='Visualizer', name='cli_test_visualizer'))))
            for name in ('first_runner', 'second_runner')]
    first, second = (runner.visualizer for runner in runners)
    assert first is not second and first.instance_name != second.instance_name
    assert second.get_instance(second.instance_name) is second
