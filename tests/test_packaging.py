"""The package in a user's own OpenMMLab project: ``focalnet_mm::`` config bases from any folder,
other backbones' weights inherited from mmdet/mmseg bases, and (slow) the built wheel installed
into a fresh virtual environment, used from a folder outside the repository with ``mim``, and
installed with its extras from PyPI over a user's numpy 2 / OpenCV 5 without downgrading them."""
import importlib.metadata
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest
from mmengine.config import Config

import focalnet_mm
from focalnet_mm.checks.training import drop_foreign_pretrained, foreign_checkpoint

from conftest import REPO_ROOT, build_once

MIM = osp.join(osp.dirname(focalnet_mm.__file__), '.mim')


def scopes(cfg):
    """Every ``_scope_`` value in a parsed config."""
    found, todo = [], [cfg._cfg_dict.to_dict()]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            found += [item['_scope_']] if '_scope_' in item else []
            todo += list(item.values())
        elif isinstance(item, (list, tuple)):
            todo += list(item)
    return found


@pytest.fixture
def mim_folder():
    if not osp.isfile(osp.join(MIM, 'model-index.yml')):
        pytest.fail(f'{MIM} is missing: it is made when the package is installed; run '
                    f'"pip install --no-deps --no-build-isolation -e {REPO_ROOT}" (tools/setup_env.sh does)')
    return MIM


def test_package_config_bases_resolve_from_any_folder(tmp_path, mim_folder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'mine.py').write_text(
        "_base_ = 'focalnet_mm::det/maskrcnn_focalnet_t_lrf_3x.py'\n"
        'model = dict(backbone=dict(drop_path_rate=0.1))\n')
    cfg = Config.fromfile('mine.py')
    assert (cfg.model.type, cfg.model.backbone.type, cfg.model.backbone.arch) == (
        'MaskRCNN', 'FocalNet', 'tiny_lrf')
    assert cfg.model.backbone.drop_path_rate == 0.1 and cfg.train_cfg.max_epochs == 36
    # built in mmdet's registries (the dicts of its mmdet:: bases say so; ours add no scope of
    # their own, which would send e.g. LoadAnnotations to mmcv's root registry)
    assert cfg.default_scope == 'mmdet' and set(scopes(cfg)) == {'mmdet'}
    from mmdet.registry import TRANSFORMS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        loader = TRANSFORMS.build(cfg.test_pipeline[-2])
    assert type(loader).__module__.startswith('mmdet.')
    seg = tmp_path / 'seg.py'
    seg.write_text("_base_ = 'focalnet_mm::seg/upernet_focalnet_t_lrf_512x512_160k_ade20k.py'\n")
    assert Config.fromfile(str(seg)).model.decode_head.type == 'UPerHead'


def test_other_backbones_weights_from_an_mmseg_base_are_dropped_with_one_line(tmp_path):
    (tmp_path / 'seg.py').write_text(
        "_base_ = 'mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py'\n"
        "model = dict(backbone=dict(_delete_=True, type='FocalNet', arch='tiny_srf'))\n")
    cfg = Config.fromfile(str(tmp_path / 'seg.py'))
    assert cfg.model.pretrained == 'open-mmlab://resnet50_v1c'
    [line] = drop_foreign_pretrained(cfg)
    assert cfg.model.pretrained is None
    assert line.startswith("model.pretrained='open-mmlab://resnet50_v1c' (from a base config)")
    assert "checkpoint='focalnet://tiny_srf'" in line and '\n' not in line
    # FocalNet's own weights, and any other backbone's config, are left alone
    cfg.model.pretrained = 'focalnet://tiny_srf'
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint='/data/my_focalnet.pth')
    assert drop_foreign_pretrained(cfg) == []
    cfg.model.backbone = dict(type='ResNetV1c', init_cfg=dict(type='Pretrained', checkpoint='x'))
    cfg.model.pretrained = 'open-mmlab://resnet50_v1c'
    assert drop_foreign_pretrained(cfg) == [] and cfg.model.pretrained


@pytest.mark.parametrize('name,foreign', [
    ('open-mmlab://resnet50_v1c', True), ('torchvision://resnet50', True),
    ('https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/swin/swin_tiny_patch4.pth', True),
    ('/data/convnext_tiny_1k_224.pth', True), ('focalnet://tiny_lrf', False),
    ('weights/focalnet_tiny_lrf.pth', False), ('/data/epoch_12.pth', False), (None, False)])
def test_foreign_checkpoint_names(name, foreign):
    assert foreign_checkpoint(name) is foreign


def test_foreign_scheme_given_to_the_backbone_names_the_fix():
    """mmseg's own tools hand model.pretrained to the backbone: the error names the fix."""
    net = focalnet_mm.FocalNet(arch=dict(embed_dim=8, depths=[1, 1, 1, 1]),
                               pretrained='open-mmlab://resnet50_v1c')
    with pytest.raises(FileNotFoundError, match=r"another backbone's weights.*model\.pretrained=None"):
        net.init_weights()


def test_train_help_imports_nothing_heavy():
    """`mim train` runs `tools/train.py -h` before every training: it must not import the stack."""
    code = ("import runpy, sys\nsys.argv = ['train.py', '-h']\ntry:\n"
            f"    runpy.run_path({osp.join(REPO_ROOT, 'tools', 'train.py')!r}, run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0\n"
            "print(sorted(m for m in ('torch', 'focalnet_mm', 'mmdet', 'mmseg') if m in sys.modules))")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'usage: train.py' in result.stdout and result.stdout.strip().endswith('[]')


# --------------------------------------------------------------------------- the wheel (slow)
def user_configs(folder, coco_mini, camvid_mini):
    """An mmdet project's config on the installed recipe (focalnet_mm:: base, itself on mmdet::
    bases) and an mmseg project's config (mmseg:: base, FocalNet backbone), each on real images,
    one iteration with a shallow FocalNet-T and no ImageNet weights (offline)."""
    (folder / 'det_mine.py').write_text(f"""
_base_ = 'focalnet_mm::det/maskrcnn_focalnet_t_lrf_3x.py'
model = dict(backbone=dict(init_cfg=None, depths=[1, 1, 1, 1]))
train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, dataset=dict(
    data_root={coco_mini + '/'!r}, ann_file='annotations.json', data_prefix=dict(img='images/'),
    indices=1, pipeline=[
        dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='Resize', scale=(160, 128), keep_ratio=True), dict(type='PackDetInputs')]))
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
val_cfg = val_dataloader = val_evaluator = test_cfg = test_dataloader = test_evaluator = None
""")
    (folder / 'seg_mine.py').write_text(f"""
_base_ = 'mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py'
custom_imports = dict(imports=['focalnet_mm'], allow_failed_imports=False)
crop_size = (64, 64)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(_delete_=True, type='FocalNet', arch='tiny_srf', depths=[1, 1, 1, 1]),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=32),
    auxiliary_head=dict(in_channels=384, num_classes=32))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    type='BaseSegDataset', data_root={camvid_mini + '/'!r}, img_suffix='.png',
    seg_map_suffix='_P.png', data_prefix=dict(img_path='images', seg_map_path='labels'),
    metainfo=dict(classes=tuple(str(i) for i in range(32))),
    pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
              dict(type='RandomCrop', crop_size=crop_size), dict(type='PackSegInputs')]))
train_cfg = dict(max_iters=1, val_interval=10)
default_hooks = dict(logger=dict(interval=1))
val_cfg = val_dataloader = val_evaluator = test_cfg = test_dataloader = test_evaluator = None
""")


def copy_source(dest):
    """The repository as a fresh clone has it (no environment, outputs or install leftovers)."""
    top_level = {'.git', '.venv', 'work_dirs', 'data', 'build', 'dist', '.pytest_cache', '.cache',
                 '.gpu'}
    anywhere = shutil.ignore_patterns('.mim', '*.egg-info', '__pycache__')

    def ignore(folder, names):
        return set(anywhere(folder, names)) | (top_level & set(names) if osp.samefile(
            folder, REPO_ROOT) else set())
    shutil.copytree(REPO_ROOT, dest, ignore=ignore, symlinks=True)
    return dest


@pytest.fixture(scope='session')
def wheel(tmp_path_factory):
    """The wheel pip builds from a copy of the repository as a fresh clone has it, once per run
    (both install tests install it). Offline: built with the build tools already installed,
    nothing downloaded."""
    def build(folder):
        built = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                                '--no-build-isolation', '--no-index', str(copy_source(folder / 'src')),
                                '-w', str(folder / 'wheels')], capture_output=True, text=True, timeout=600)
        assert built.returncode == 0, built.stderr[-3000:]
        [path] = list((folder / 'wheels').glob('focalnet_mm-*.whl'))
        return str(path)
    return build_once(tmp_path_factory, 'wheel', build)


@pytest.mark.slow  # builds a wheel, trains two one-iteration runs in a new environment
def test_wheel_in_a_fresh_venv_serves_a_project_outside_the_repository(tmp_path, coco_mini, camvid_mini,
                                                                      wheel):
    run = lambda *cmd, **kw: subprocess.run(  # noqa: E731
        [str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    venv, project = tmp_path / 'venv', tmp_path / 'project'
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ('model-index.yml', 'configs/det/maskrcnn_focalnet_t_lrf_3x.py', 'tools/train.py',
                    'tools/data/make_demo_coco.py', 'tools/dist_train.sh', 'demo/demo.jpg'):
        assert f'focalnet_mm/.mim/{shipped}' in names, shipped
    # a new environment next to the installed stack (its packages through a .pth file: no
    # network, no copy), then the wheel as pip would install it
    assert run(sys.executable, '-m', 'venv', '--without-pip', venv).returncode == 0
    python = venv / 'bin' / 'python'
    purelib = run(python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    with open(osp.join(purelib.stdout.strip(), 'focalnet_stack.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    installed = run(sys.executable, '-m', 'pip', '--python', python, 'install', '--no-index',
                    '--no-deps', wheel)
    assert installed.returncode == 0, installed.stderr[-3000:]

    project.mkdir()
    user_configs(project, coco_mini, camvid_mini)
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'FOCALNET_WEIGHTS_DIR')}
    env.update(OMP_NUM_THREADS='1')
    # the weights command is installed (its behaviour: test_weights_sources.py)
    script = (venv / 'bin' / 'focalnet-download-weights').read_text()
    assert 'from focalnet_mm.commands import download_weights' in script
    listed = run(venv / 'bin' / 'focalnet-mm', cwd=project, env=env)
    assert listed.returncode == 0 and '  download-weights ' in listed.stdout, listed.stderr[-2000:]
    search = run(python, '-m', 'mim', 'search', 'focalnet_mm', cwd=project, env=env)
    assert search.returncode == 0, search.stdout[-2000:] + search.stderr[-2000:]
    assert 'configs/det/maskrcnn_focalnet_t_lrf_3x.py' in search.stdout
    for config, work_dir in (('det_mine.py', 'w_det'), ('seg_mine.py', 'w_seg')):
        trained = run(python, '-m', 'mim', 'train', 'focalnet_mm', config, '--work-dir', work_dir,
                      cwd=project, env=env)
        log = trained.stdout + trained.stderr
        assert trained.returncode == 0 and 'Training finished successfully' in log, log[-4000:]
        # the installed package's tools ran, not the repository's
        tools = osp.join(sysconfig.get_paths(vars={'base': str(venv)})['purelib'], 'focalnet_mm',
                         '.mim', 'tools', 'train.py')
        assert f'Training command is {python} {tools} {config}' in log, log[:2000]
        assert ' loss: ' in log and 'Failed to search registry' not in log
        checkpoints = [n for n in os.listdir(project / work_dir) if n.endswith('.pth')]
        assert checkpoints, os.listdir(project / work_dir)
        if config == 'seg_mine.py':  # mmseg's base hands FocalNet a ResNet checkpoint
            assert "model.pretrained='open-mmlab://resnet50_v1c' (from a base config)" in log


# --------------------------------------------------------------------------- pip install over numpy 2
#: what a user's environment has before ``pip install focalnet-mm[det,seg,mim]``; the README says
#: they stay as they are
USER_HAS = ('numpy==2.4.6', 'opencv-python>=5')


def requirement_closure(names, leave_out):
    """Installed distributions that ``names`` need at run time, found through their metadata."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    found, todo = {}, list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found or name in leave_out:
            continue
        try:
            found[name] = dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({'extra': ''}):
                todo.append(requirement.name)
    return found.values()


def torch_and_mmcv_view(folder):
    """Links to the installed torch (and what it imports) and mmcv with its compiled ops: what pip
    cannot build and a user brings (README "Use it in your own project"). A new environment sees
    them through a .pth file; everything else comes from PyPI. numpy and setuptools stay out (the
    environment's own are the ones the test is about)."""
    folder.mkdir()
    closure = list(requirement_closure(['torch'], leave_out={'numpy', 'setuptools'}))
    closure.append(importlib.metadata.distribution('mmcv'))  # without its declared dependencies
    for dist in closure:
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != '..'}:
            source = dist.locate_file(top)
            if osp.exists(source) and not (folder / top).exists():
                (folder / top).symlink_to(source)
    return folder


def pip_versions(python, run):
    listed = run(python, '-m', 'pip', 'list', '--format', 'json')
    assert listed.returncode == 0, listed.stderr[-2000:]
    return {p['name'].lower(): p['version'] for p in json.loads(listed.stdout)}


@pytest.mark.slow  # a new environment filled from PyPI (downloads ~150 MB; times: docs/tools.md)
@pytest.mark.timeout(1800)
def test_pip_install_with_extras_over_numpy2_downgrades_nothing_and_mim_works(tmp_path, wheel):
    from packaging.version import Version
    run = lambda *cmd, **kw: subprocess.run(  # noqa: E731
        [str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    venv = tmp_path / 'venv'
    python = venv / 'bin' / 'python'
    assert run(sys.executable, '-m', 'venv', venv).returncode == 0  # pip from ensurepip: offline
    purelib = run(python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    with open(osp.join(purelib.stdout.strip(), 'torch_and_mmcv.pth'), 'w') as f:
        f.write(str(torch_and_mmcv_view(tmp_path / 'view')) + '\n')
    reachable = run(python, '-m', 'pip', 'download', '--no-deps', 'mmengine==0.10.7', '-d',
                    tmp_path / 'probe')
    if reachable.returncode != 0:
        pytest.skip('PyPI is not reachable (pip download mmengine==0.10.7 failed): '
                    + reachable.stderr.strip().splitlines()[-1])
    # --no-compile, here and below: pip byte-compiles every module it installs (~6000 for the
    # extras, most never imported here); what is tested is what gets installed, and the imports
    # below compile what they use
    user = run(python, '-m', 'pip', 'install', '--no-compile', *USER_HAS)
    assert user.returncode == 0, user.stderr[-3000:]
    before = pip_versions(python, run)

    # README "Use it in your own project", the install line
    installed = run(python, '-m', 'pip', 'install', '--no-compile', f'{wheel}[det,seg,mim]')
    output = installed.stdout + installed.stderr
    assert installed.returncode == 0, output[-4000:]
    assert 'ERROR' not in output, output[-4000:]
    after = pip_versions(python, run)
    changed = {name: (version, after.get(name)) for name, version in before.items()
               if after.get(name) is None or Version(after[name]) < Version(version)}
    assert not changed, f'downgraded or removed (before, after): {changed}'
    assert Version(after['numpy']).major == 2 and Version(after['opencv-python']).major >= 5

    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'FOCALNET_WEIGHTS_DIR')}
    mim_help = run(venv / 'bin' / 'mim', '--help', cwd=tmp_path, env=env)
    assert mim_help.returncode == 0 and 'train' in mim_help.stdout, mim_help.stderr[-2000:]
    assert 'pkg_resources is deprecated' not in mim_help.stderr, mim_help.stderr  # setuptools<80.9
    search = run(venv / 'bin' / 'mim', 'search', 'focalnet_mm', cwd=tmp_path, env=env)
    assert search.returncode == 0, search.stdout[-2000:] + search.stderr[-2000:]
    assert 'configs/det/maskrcnn_focalnet_t_lrf_3x.py' in search.stdout
    # COCO panoptic evaluation as README says: panopticapi-lite without its declared numpy<2
    panoptic = run(python, '-m', 'pip', 'install', '--no-compile', '--no-deps',
                   'panopticapi-lite==0.2.0')
    assert panoptic.returncode == 0 and 'ERROR' not in panoptic.stderr, panoptic.stderr[-2000:]
    check = ('import numpy, cv2, focalnet_mm, mmdet.models, mmseg.models\n'
             'from mmdet.evaluation.functional import pq_compute_single_core\n'
             'from panopticapi.evaluation import PQStat\n'
             'stat = PQStat(); stat[1].tp, stat[1].iou = 2, 1.5; stat[1].fn = 1\n'
             'results, _ = stat.pq_average({1: {"isthing": 1}}, isthing=None)\n'
             'print(numpy.__version__, cv2.__version__, round(results["pq"], 3))')
    imported = run(python, '-c', check, cwd=tmp_path, env=env)
    assert imported.returncode == 0, imported.stderr[-3000:]
    numpy_version, _, pq = imported.stdout.split()
    assert numpy_version == after['numpy'] and pq == '0.6', imported.stdout


# --------------------------------------------------------------------------- console commands
def test_focalnet_mm_command_runs_shipped_tools_by_name(capsys):
    from focalnet_mm import commands
    tools = commands.available_tools()
    assert tools['train'].endswith(osp.join('.mim', 'tools', 'train.py'))
    assert tools['get-flops'].endswith(osp.join('analysis_tools', 'get_flops.py'))
    assert tools['dist-train'].endswith('dist_train.sh') and 'setup-env' not in tools
    assert commands.main([]) == 0 and '  download-weights ' in capsys.readouterr().out
    argv = list(sys.argv)
    assert commands.main(['train', '-h']) == 0  # argparse's exit status comes back
    assert 'usage: train.py' in capsys.readouterr().out and sys.argv == argv
    assert commands.main(['check_dataset']) != 0  # the tool's own usage error (no config)
    assert commands.main(['trian']) == 2
    assert "no tool 'trian'" in capsys.readouterr().err
