"""Issue 26: real data never kills a long run.

A copy of coco_mini with a truncated JPEG, a missing file, a zero-width box, a two-point polygon
and an unknown category id, and a copy of camvid_mini with a label map of the wrong size:
tools/check_dataset.py reports each with exact counts; training on them skips and names each
broken file once (DataLoader workers included); a NaN loss injected at iteration k stops the run
before the weights change, leaving iter_{k-1}.pth as the last checkpoint, or (mode=drop) drops
the batch and goes on.
"""
import gc
import glob
import json
import os
import os.path as osp
import re
import shutil

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from PIL import Image
from test_custom_dataset import DET_TEMPLATE, SEG_TEMPLATE, TINY_DET, TINY_SEG, edit_template, error_of
from torch._utils import ExceptionWrapper  # what a DataLoader worker sends back on an error

import focalnet_mm  # noqa: F401  (registers the wrapper, the optimizer wrappers and the hook)
from focalnet_mm.config.safe_training import make_training_safe
from focalnet_mm.engine.bad_samples import SkipBadSamples, TooManyBadSamplesError, one_line, wrap_datasets

from conftest import load_tool

check_tool = load_tool('tools/check_dataset.py', 'bad_data_check_tool')
train_tool = load_tool('tools/train.py', 'bad_data_train_tool')

CLASSES = ('person', 'motorcycle', 'bear', 'bottle')  # the coco_mini categories the set uses, JSON order
TRUNCATED, MISSING = '000000128372.jpg', '000000404249.jpg'


def broken_coco(coco_mini, root):
    """coco_mini (6 images, one without objects) with one problem of each kind."""
    shutil.copytree(osp.join(coco_mini, 'images'), root / 'images')
    with open(osp.join(coco_mini, 'annotations.json')) as f:
        coco = json.load(f)
    data = (root / 'images' / TRUNCATED).read_bytes()
    (root / 'images' / TRUNCATED).write_bytes(data[:len(data) // 2])
    os.remove(root / 'images' / MISSING)
    anns = {a['id']: a for a in coco['annotations']}
    on = {}
    for a in coco['annotations']:
        on.setdefault(a['image_id'], []).append(a['id'])
    zero_width, two_points = on[464689][:2]  # image 000000464689.jpg
    anns[zero_width]['bbox'][2] = 0
    anns[two_points]['segmentation'] = [[10.0, 10.0, 50.0, 50.0]]
    anns[on[194216][0]]['category_id'] = 999  # 000000194216.jpg
    os.makedirs(root / 'annotations')
    for split in ('train', 'val'):
        with open(root / 'annotations' / f'{split}.json', 'w') as f:
            json.dump(coco, f)
    return coco


def det_config(tmp_path, root, **values):
    values = dict(dict(data_root=str(root) + '/', classes=CLASSES, image_scale=(160, 128),
                       max_epochs=4, train_img_dir='images/', val_img_dir='images/'), **values)
    return edit_template(DET_TEMPLATE, tmp_path / 'maskrcnn_broken.py', **values)


def table_counts(output):
    """{row name: [counts per split]} of the printed table."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if line.startswith('| ') and len(cells) >= 3 and cells[0] != 'problem':
            rows[cells[0]] = [int(c) for c in cells[2:]]
    return rows


# --------------------------------------------------------------------------- check_dataset.py
def test_check_dataset_counts_each_problem_of_a_broken_coco_set(tmp_path, coco_mini, capsys):
    broken_coco(coco_mini, tmp_path / 'data')
    config = det_config(tmp_path, tmp_path / 'data')
    with pytest.raises(SystemExit) as exit_:
        check_tool.main([config, '--split', 'train', '--out', str(tmp_path / 'check'), '--nproc', '1'])
    assert exit_.value.code == 1  # a missing and a truncated image crash training
    out = capsys.readouterr().out
    rows = table_counts(out)
    assert rows['samples'] == [6]
    assert rows['image file missing'] == [1] and rows['image cannot be read'] == [1]
    assert rows['invalid box (w or h <= 0, NaN, outside the image)'] == [1]
    assert rows['invalid polygon (< 3 points, odd coordinates)'] == [1]
    assert rows['category id not among the JSON categories'] == [1]
    # 000000000089.jpg has no object at all; the other four hold person/bottle/bear/motorcycle
    assert rows['image without annotations (of the classes)'] == [1]
    assert 'class with no instance' not in rows and 'duplicate image id' not in rows
    lines = [line for line in out.splitlines() if line.startswith(('error:', 'warning:'))]
    assert len(lines) == 6, lines  # one line per kind
    assert any(line.startswith('error: train: 1 x image file missing: ') and MISSING in line
               for line in lines)
    assert any(line.startswith('error: train: 1 x image cannot be read: ') and TRUNCATED in line
               and 'no end-of-image marker' in line for line in lines)
    assert any('category_id 999' in line and '000000194216.jpg' in line for line in lines)
    assert any('invalid box' in line and '000000464689.jpg' in line and ', 0, ' in line for line in lines)
    assert any('invalid polygon' in line and '2 points' in line for line in lines)
    # coco_mini: four 640x427/480 images readable -> long 640, short about 427-480
    assert re.search(r'image_scale = \(640, 4[2-8]\d\)', out), out
    written = sorted(os.listdir(tmp_path / 'check'))
    assert written == ['train_image_sizes.png', 'train_object_sizes.png', 'train_per_class.png']


def test_check_dataset_decode_and_a_clean_set(tmp_path, coco_mini, capsys):
    """--decode finds the truncated file by decoding it; the untouched set exits 0 (warnings
    only: the image without objects)."""
    broken_coco(coco_mini, tmp_path / 'data')
    with pytest.raises(SystemExit):
        check_tool.main([det_config(tmp_path, tmp_path / 'data'), '--split', 'train', '--decode',
                         '--nproc', '1'])
    out = capsys.readouterr().out
    assert re.search(rf'{TRUNCATED}: OSError: image file is truncated', out), out
    clean = tmp_path / 'clean'
    shutil.copytree(osp.join(coco_mini, 'images'), clean / 'images')
    os.makedirs(clean / 'annotations')
    for split in ('train', 'val'):
        shutil.copy(osp.join(coco_mini, 'annotations.json'), clean / 'annotations' / f'{split}.json')
    reports = check_tool.main([det_config(tmp_path, clean), '--nproc', '1'])
    assert [r.name for r in reports] == ['train', 'val']  # test = val: checked once
    assert {k: len(v) for k, v in reports[0].problems.items() if v} == {'no_annotations': 1}


def broken_seg(camvid_mini, root, bad_value=True):
    """camvid_mini as an ADE-style set (0 = unlabelled, classes 1..4), one label map 10 px too
    narrow and (``bad_value``) one with a value beyond the classes."""
    frames = sorted(glob.glob(osp.join(camvid_mini, 'images', '*.png')))
    for split in ('train', 'val'):
        os.makedirs(root / 'img_dir' / split)
        os.makedirs(root / 'ann_dir' / split)
    for i, frame in enumerate(frames):
        image = Image.open(frame).convert('RGB').resize((96, 72))
        name = osp.splitext(osp.basename(frame))[0]
        label = np.zeros((72, 96), np.uint8)
        label[:36] = 1 + i % 4
        if i == 1:
            label = label[:, :86]  # the wrong size
        if i == 2 and bad_value:
            label[0, 0] = 9  # beyond 4 classes
        for split in ('train', 'val'):
            image.save(root / 'img_dir' / split / f'{name}.jpg')
            Image.fromarray(label).save(root / 'ann_dir' / split / f'{name}.png')
    return frames


def seg_config(tmp_path, root, **values):
    values = dict(dict(data_root=str(root) + '/', classes=('road', 'car', 'building', 'sky'),
                       palette=[(1, 1, 1)] * 4, reduce_zero_label=True, image_scale=(96, 72),
                       crop_size=(64, 64), max_epochs=4), **values)
    return edit_template(SEG_TEMPLATE, tmp_path / 'upernet_broken.py', **values)


def test_check_dataset_seg_label_of_the_wrong_size(tmp_path, camvid_mini, capsys):
    broken_seg(camvid_mini, tmp_path / 'data')
    with pytest.raises(SystemExit) as exit_:
        check_tool.main([seg_config(tmp_path, tmp_path / 'data'), '--split', 'train', 'val',
                         '--nproc', '1'])
    assert exit_.value.code == 1
    rows = table_counts(capsys.readouterr().out)
    assert rows['samples'] == [5, 5]
    assert rows['label map size differs from its image'] == [1, 1]
    assert rows['label values outside the classes'] == [1, 1]
    assert set(rows) == {'samples', 'label map size differs from its image',
                         'label values outside the classes'}


def test_check_dataset_classification_list(tmp_path, capsys):
    """An mmpretrain image list with a missing file and a label beyond the classes."""
    make = load_tool('tools/data/make_demo_imagenet.py', 'bad_data_make_imagenet')
    root = tmp_path / 'cls'
    make.write_dataset(str(root), classes=2, train_per_class=2, val_per_class=1, size=32, seed=0)
    with open(root / 'meta' / 'train.txt', 'a') as f:
        f.write('n00000001/gone.JPEG 1\nn00000000/n00000000_0.JPEG 5\n')
    config = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'cls',
                      'focalnet_p4_e64_tinyimagenet_64x64.py')
    with pytest.raises(SystemExit) as exit_:
        check_tool.main([config, '--split', 'train', '--nproc', '1', '--out', str(tmp_path / 'out'),
                         '--cfg-options', f'train_dataloader.dataset.data_root={root}',
                         'train_dataloader.dataset.ann_file=meta/train.txt',
                         'train_dataloader.dataset.data_prefix=train',
                         'train_dataloader.dataset.metainfo.classes=[a,b]'])
    assert exit_.value.code == 1
    rows = table_counts(capsys.readouterr().out)
    assert rows == {'samples': [6], 'image file missing': [1], 'class label outside the classes': [1]}
    assert sorted(os.listdir(tmp_path / 'out')) == ['train_image_sizes.png', 'train_per_class.png']


# --------------------------------------------------------------------------- skipping (fast)
class _Listed:
    """A data set whose samples ``bad`` (1 and 3) raise (as a missing file does)."""
    metainfo = dict(classes=('a', ))

    def __init__(self, n, bad=(1, 3)):
        self.n, self.bad = n, bad

    def __len__(self):
        return self.n

    def get_data_info(self, idx):
        return dict(img_path=f'img{idx}.jpg')

    def _rand_another(self):  # as mmengine's BaseDataset; here the last sample, always loadable
        return self.n - 1

    def __getitem__(self, idx):
        if idx in self.bad:
            raise FileNotFoundError(f'img{idx}.jpg')
        return idx


def test_skip_bad_samples_counts_across_workers_and_stops_beyond_the_share():
    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance('bad_samples_unit', log_level='WARNING')
    messages = []
    logger.warning = messages.append  # print_log(logger='current') ends here
    dataset = SkipBadSamples(_Listed(20), max_bad_share=0.1)  # at most 2 of 20
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2,
                                         persistent_workers=False, shuffle=False)
    for _ in range(2):  # two epochs: new workers each time
        values = torch.cat(list(loader)).tolist()
        assert len(values) == 20 and 1 not in values and 3 not in values
    assert dataset.bad_count == 2  # marked by the workers, seen by the main process
    # the stop: one more bad sample than the share allows, named in one line; a worker's error
    # reaches the main process through torch's ExceptionWrapper, as below
    dataset = SkipBadSamples(_Listed(10), max_bad_share=0.1, max_bad_count=0)  # at most 1 of 10
    dataset[1]
    try:
        dataset[3]
    except TooManyBadSamplesError:
        wrapped = ExceptionWrapper(where='in DataLoader worker process 1')
    with pytest.raises(TooManyBadSamplesError) as error:
        wrapped.reraise()
    assert_stop_line(error.value)


@pytest.mark.slow  # after an error in a worker, torch's DataLoader takes 10 s to stop its workers
def test_the_stop_raised_in_a_worker_reaches_the_main_process_in_one_line():
    dataset = SkipBadSamples(_Listed(10), max_bad_share=0.1, max_bad_count=0)  # at most 1 of 10
    dataset[1]
    with pytest.raises(TooManyBadSamplesError) as error:
        list(torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2))
    assert_stop_line(error.value)
    del error  # its traceback holds the loader's iterator: stop its workers in this test
    gc.collect()


def assert_stop_line(error):
    message = one_line(error)
    assert message.startswith('2 of 10 samples (20.0%) cannot be loaded, more than '
                              'skip_bad_samples.max_share=0.1 allows (1 of 10; max_count=0); '
                              'the last: img3.jpg')
    assert 'tools/check_dataset.py' in message


@pytest.mark.parametrize('size, bad, allowed, passed', [
    # a small set: 1 % of 60 is no sample, the floor of 5 lets a few broken files through
    (60, 6, 5, 'more than skip_bad_samples.max_count=5 allows (max_share=0.01 of 60 would allow 0)'),
    # a large set: the share is the larger limit
    (1000, 11, 10, 'more than skip_bad_samples.max_share=0.01 allows (10 of 1000; max_count=5)'),
])
def test_the_stop_allows_the_larger_of_a_count_and_a_share(size, bad, allowed, passed):
    """Defaults: stop beyond max(1 % of the set, 5 samples); the line names the limit passed."""
    dataset = SkipBadSamples(_Listed(size, bad=range(bad)))
    assert dataset.max_bad() == allowed
    for idx in range(allowed):
        assert dataset[idx] >= bad  # replaced by a loadable sample
    assert dataset.bad_count == allowed
    with pytest.raises(TooManyBadSamplesError) as error:
        dataset[allowed]
    assert one_line(error.value).startswith(
        f'{bad} of {size} samples ({bad / size:.1%}) cannot be loaded, {passed}; the last: img{bad - 1}.jpg')
    with pytest.raises(ValueError, match=r'^skip_bad_samples.max_count must be a whole number >= 0'):
        SkipBadSamples(_Listed(4), max_bad_count=-1)


def test_every_leaf_dataset_is_wrapped_once():
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='ConcatDataset', datasets=[dict(type='A'), dict(type='RepeatDataset', times=2,
                                                             dataset=dict(type='B'))]))))
    cfg.val_dataloader = dict(dataset=dict(type='C'))
    cfg.test_dataloader = cfg.val_dataloader
    wrap_datasets(cfg)
    wrap_datasets(cfg)  # the build path may run twice: no double wrapping
    a, repeat = cfg.train_dataloader.dataset.datasets
    assert a == dict(type='SkipBadSamples', dataset=dict(type='A'), max_bad_share=0.01, max_bad_count=5)
    assert repeat.dataset.type == 'SkipBadSamples' and repeat.dataset.dataset.type == 'B'
    assert cfg.test_dataloader.dataset.dataset.type == 'C'
    cfg = Config(dict(skip_bad_samples=dict(max_count=0), val_dataloader=dict(dataset=dict(type='C'))))
    wrap_datasets(cfg)  # one key alone keeps the other's default
    assert (cfg.val_dataloader.dataset.max_bad_share, cfg.val_dataloader.dataset.max_bad_count) == (0.01, 0)
    cfg = Config(dict(skip_bad_samples=None, val_dataloader=dict(dataset=dict(type='C'))))
    wrap_datasets(cfg)
    assert cfg.val_dataloader.dataset.type == 'C'


def test_label_map_size_is_checked_against_the_image_as_read():
    """mmseg's test pipelines resize the image before loading the label: compare with the
    image's original shape."""
    from focalnet_mm.engine import CheckSegMapSize
    check = CheckSegMapSize()
    resized = dict(img=np.zeros((32, 40, 3)), ori_shape=(72, 96), gt_seg_map=np.zeros((72, 96)))
    assert check(resized) is resized
    with pytest.raises(ValueError, match=r'^label map x.png is 86x72 but its image is 96x72$'):
        check(dict(resized, gt_seg_map=np.zeros((72, 86)), seg_map_path='x.png'))
    assert check(dict(img=np.zeros((8, 8, 3)))) is not None  # no label: nothing to check


def test_nonfinite_guard_is_applied_to_the_optimizer_wrapper():
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper', optimizer=dict(type='SGD', lr=0.1)),
                      nonfinite_loss=dict(mode='drop')))
    make_training_safe(cfg)
    assert cfg.optim_wrapper.type == 'FiniteAmpOptimWrapper'
    assert cfg.custom_hooks == [dict(type='NonFiniteLossHook', mode='drop', max_dropped=10,
                                     max_amp_overflows=20)]
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)), nonfinite_loss=None))
    make_training_safe(cfg)
    assert 'type' not in cfg.optim_wrapper and 'custom_hooks' not in cfg


def _fake_runner(wrapper, iteration):
    from types import SimpleNamespace

    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('bad_data_amp')
    hub.update_info('last_ckpt', '/w/iter_4.pth')
    return SimpleNamespace(optim_wrapper=wrapper, iter=iteration, message_hub=hub,
                           train_loop=SimpleNamespace(max_iters=100))


def test_amp_overflows_in_a_row_stop_the_run(monkeypatch):
    """AMP: the loss scaler skips an overflowing step itself; N skipped steps in a row stop the
    run. (mmengine's AmpOptimWrapper wants a GPU: here the scaler is torch's CPU GradScaler.)"""
    from mmengine.optim.optimizer import amp_optimizer_wrapper

    from focalnet_mm.engine import FiniteAmpOptimWrapper, NonFiniteLossError, NonFiniteLossHook
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available', lambda: True)
    param = torch.nn.Parameter(torch.ones(2))
    wrapper = FiniteAmpOptimWrapper(optimizer=torch.optim.SGD([param], lr=0.1))
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=8.0)
    hook = NonFiniteLossHook(max_amp_overflows=3)
    for iteration in range(2):
        wrapper.update_params((param * float('inf')).sum())
        hook.after_train_iter(_fake_runner(wrapper, iteration), iteration, {}, {})
    assert wrapper.amp_overflows_in_a_row == 2 and torch.equal(param.detach(), torch.ones(2))
    wrapper.update_params(param.sum())  # a finite step: the count starts again
    assert wrapper.amp_overflows_in_a_row == 0 and param[0].item() == pytest.approx(0.9)
    for iteration in range(3, 6):
        wrapper.update_params((param * float('nan')).sum())
        if iteration < 5:
            hook.after_train_iter(_fake_runner(wrapper, iteration), iteration, {}, {})
    with pytest.raises(NonFiniteLossError, match=r'^3 AMP steps in a row skipped for inf/NaN '
                                                 r'gradients up to iteration 6 \(nonfinite_loss.'
                                                 r'max_amp_overflows=3\).* the newest checkpoint, '
                                                 r'/w/iter_4.pth, is the last good'):
        hook.after_train_iter(_fake_runner(wrapper, 5), 5, {}, {})
    assert param[0].item() == pytest.approx(0.9)


def _leaves(dataset):
    if dataset.get('type') == 'SkipBadSamples':
        return [dataset]
    inner = [dataset['dataset']] if 'dataset' in dataset else list(dataset.get('datasets', [dataset]))
    return [dataset] if inner == [dataset] else [leaf for d in inner for leaf in _leaves(d)]


@pytest.mark.slow  # reads every config of the project (about 0.5 s each)
def test_every_project_config_is_guarded():
    """What tools/train.py applies reaches every config: a guarded optimizer wrapper, the hook,
    and every data set of every dataloader wrapped."""
    paths = sorted(p for p in glob.glob(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                                                 'configs', '**', '*.py'), recursive=True)
                   if '/_base_/' not in p)  # partial bases (e.g. the Mask2Former backbone) aside
    assert len(paths) >= 50
    for path in paths:
        cfg = Config.fromfile(path)
        make_training_safe(cfg)
        wrap_datasets(cfg)
        assert cfg.optim_wrapper.type.startswith('Finite'), path
        assert [h['type'] for h in cfg.custom_hooks].count('NonFiniteLossHook') == 1, path
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if cfg.get(loader):
                leaves = _leaves(cfg[loader].dataset)
                assert leaves and all(leaf.type == 'SkipBadSamples' for leaf in leaves), (path, loader)


# --------------------------------------------------------------------------- training (slow)
def read_log(work_dir):
    return '\n'.join(open(p).read() for p in glob.glob(osp.join(work_dir, '*', '*.log')))


@pytest.mark.slow
def test_training_on_a_broken_coco_set_skips_and_names_each_file_once(tmp_path, coco_mini):
    broken_coco(coco_mini, tmp_path / 'data')
    config = det_config(tmp_path, tmp_path / 'data')
    work_dir = str(tmp_path / 'work')
    # 5 images with objects (filter_empty_gt), 2 of them unreadable: 40 % bad, within the default
    # floor of 5 samples; two workers that are new processes every epoch
    runner = train_tool.main([config, '--work-dir', work_dir, '--cfg-options'] + TINY_DET + [
        'train_dataloader.num_workers=2', 'train_cfg.max_epochs=2', 'val_cfg=None', 'val_dataloader=None',
        'val_evaluator=None', 'default_hooks.checkpoint.save_best=None',
        'visualizer.name=bad_det_train'])
    assert runner.iter == 10  # 2 epochs x 5 (each bad sample replaced by a good one)
    log = read_log(work_dir)
    for name, error in ((MISSING, 'FileNotFoundError'), (TRUNCATED, 'AssertionError: failed to load image')):
        named = re.findall(rf'skipped a sample that cannot be loaded: \S*{name} \(([^)]*)', log)
        assert len(named) == 1 and named[0].startswith(error), (name, named)
    assert 'at most 5 allowed' in log
    # at most one broken sample stops the same run with one line at the second
    message = error_of(lambda: train_tool.main([config, '--work-dir', str(tmp_path / 'w2'),
                                                '--cfg-options'] + TINY_DET + [
        'train_cfg.max_epochs=2', 'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
        'default_hooks.checkpoint.save_best=None', 'skip_bad_samples.max_count=1',
        'visualizer.name=bad_det_stop']))
    assert re.match(r'error: 2 of 5 samples \(40.0%\) cannot be loaded, more than '
                    r'skip_bad_samples.max_count=1 allows \(max_share=0.01 of 5 would allow 0\); '
                    r'the last: \S+000000(128372|404249).jpg', message), message


def small_broken_coco(coco_mini, root, copies=12):
    """A set of 60 images with objects, as small sets people fine-tune on: ``copies`` copies of
    coco_mini's 5 images with objects; the first copy is :func:`broken_coco`'s (a missing and a
    truncated file, a zero-width box, a 2-point polygon, an unknown category)."""
    coco = broken_coco(coco_mini, root)
    with_objects = sorted({a['image_id'] for a in coco['annotations']})
    images = {im['id']: im for im in coco['images']}
    coco['images'] = [images[i] for i in with_objects]
    next_image, next_ann = max(images) + 1, max(a['id'] for a in coco['annotations']) + 1
    for copy in range(1, copies):
        for image_id in with_objects:
            original = images[image_id]['file_name']
            image = dict(images[image_id], id=next_image, file_name=f'copy{copy}_{original}')
            shutil.copy(osp.join(coco_mini, 'images', original), root / 'images' / image['file_name'])
            coco['images'].append(image)
            for ann in [a for a in coco['annotations'] if a['image_id'] == image_id]:
                coco['annotations'].append(dict(ann, id=next_ann, image_id=next_image))
                next_ann += 1
            next_image += 1
    for split in ('train', 'val'):
        with open(root / 'annotations' / f'{split}.json', 'w') as f:
            json.dump(coco, f)
    return len(coco['images'])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_small_set_with_two_broken_files_trains_through_with_defaults(tmp_path, coco_mini):
    """60 images, one missing and one truncated: 3.3 % of the set, within the default floor of 5
    samples (1 % of 60 is none); the run trains its epoch and names each file once."""
    assert small_broken_coco(coco_mini, tmp_path / 'data') == 60
    config = det_config(tmp_path, tmp_path / 'data', max_epochs=1)
    work_dir = str(tmp_path / 'work')
    runner = train_tool.main([config, '--work-dir', work_dir, '--cfg-options'] + TINY_DET + [
        'train_dataloader.batch_size=4', 'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
        'default_hooks.checkpoint.save_best=None', 'visualizer.name=bad_det_small'])
    assert runner.iter == 15  # 60 samples, batch 4: each broken one replaced by a loadable one
    log = read_log(work_dir)
    for name in (MISSING, TRUNCATED):
        named = re.findall(rf'skipped a sample that cannot be loaded: \S*/{name} ', log)
        assert len(named) == 1, (name, named)
    assert 'at most 5 allowed' in log


class _NaNAt(Hook):
    """Makes the data preprocessor's output NaN at iteration ``at`` (1-based): a NaN loss."""
    priority = 'HIGHEST'

    def __init__(self, at):
        self.at, self.handle = at, None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at:
            poison = lambda module, args, out: dict(out, inputs=out['inputs'] * float('nan'))  # noqa: E731
            self.handle = runner.model.data_preprocessor.register_forward_hook(poison)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


@pytest.mark.slow
def test_a_nan_loss_stops_seg_training_before_the_weights_change(tmp_path, camvid_mini):
    """ADE-style set with a label map of the wrong size (which mmseg would let through to a crash
    in the model) and a missing one: both skipped, named once; a NaN loss at iteration 3 stops the run
    with iter_2.pth as the last checkpoint and a non-zero exit; mode=drop goes on."""
    from mmengine.registry import HOOKS
    HOOKS.register_module(name='_NaNAt', module=_NaNAt, force=True)
    frames = broken_seg(camvid_mini, tmp_path / 'data', bad_value=False)
    missing = osp.splitext(osp.basename(frames[4]))[0]
    os.remove(tmp_path / 'data' / 'ann_dir' / 'train' / f'{missing}.png')
    # 10 epochs in the template: a warm-up of 0.1 * 10 * 2 = 2 iterations; 3 epochs trained
    config = seg_config(tmp_path, tmp_path / 'data', max_epochs=10)
    with open(config, 'a') as f:
        f.write("custom_hooks = [dict(type='_NaNAt', at=3)]\n")
    common = TINY_SEG + ['train_cfg.max_epochs=3', 'val_cfg=None', 'val_dataloader=None',
                         'val_evaluator=None', 'default_hooks.checkpoint.save_best=None',
                         'default_hooks.checkpoint.by_epoch=False', 'default_hooks.checkpoint.interval=1',
                         'default_hooks.checkpoint.max_keep_ckpts=-1', 'skip_bad_samples.max_share=0.5']
    work_dir = tmp_path / 'stop'
    message = error_of(lambda: train_tool.main([config, '--work-dir', str(work_dir), '--cfg-options']
                                               + common + ['visualizer.name=bad_seg_stop']))
    # 5 frames, batch 2, drop_last: 2 iterations an epoch; iteration 3 is the first of epoch 2
    assert re.match(r'error: non-finite loss at iteration 3 \(epoch 2, 1/2\) \(loss=nan, '
                    r'decode\.loss_ce=nan, aux\.loss_ce=nan\), batch: \S+\.jpg, \S+\.jpg: training '
                    r'stopped before the weights were updated; the newest checkpoint, \S+iter_2\.pth, '
                    r'is the last good one', message), message
    assert (work_dir / 'iter_2.pth').exists() and not (work_dir / 'iter_3.pth').exists()
    assert (work_dir / 'last_checkpoint').read_text().endswith('iter_2.pth')
    weights = torch.load(work_dir / 'iter_2.pth', map_location='cpu', weights_only=False)['state_dict']
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())

    work_dir = tmp_path / 'drop'
    runner = train_tool.main([config, '--work-dir', str(work_dir), '--cfg-options'] + common + [
        'nonfinite_loss.mode=drop', 'visualizer.name=bad_seg_drop'])
    assert runner.iter == 6
    log = read_log(str(work_dir))
    assert len(re.findall(r'non-finite loss at iteration 3 .*batch dropped, weights not updated '
                          r'\(1 of at most 10 dropped\)', log)) == 1
    named = re.findall(rf'skipped a sample that cannot be loaded: \S+{missing}\.jpg, \S+{missing}\.png '
                       r'\(FileNotFoundError', log)
    assert len(named) == 1, log
    narrow = osp.splitext(osp.basename(frames[1]))[0]
    named = re.findall(rf'skipped a sample that cannot be loaded: \S+{narrow}\.jpg, \S+{narrow}\.png '
                       r'\(ValueError: label map \S+ is 86x72 but its image is 96x72\)', log)
    assert len(named) == 1, log
    # weights and BatchNorm statistics: the dropped batch's forward pass left no trace
    final = torch.load(work_dir / 'iter_6.pth', map_location='cpu', weights_only=False)['state_dict']
    assert [k for k, v in final.items() if v.is_floating_point() and not torch.isfinite(v).all()] == []
