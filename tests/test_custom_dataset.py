"""Your own data: the configs/det/custom and configs/seg/custom templates, copied and edited as the
docs say, on sets built from real images (coco_mini: three categories under new names; camvid_mini:
four classes merged from CamVid's 32, 0 = unlabelled), through train, test, infer, browse and the
confusion matrix; and the checks of tools/train.py (focalnet_mm/checks/training.py)."""
import glob
import json
import os
import os.path as osp
import pickle
import re
from types import SimpleNamespace

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from focalnet_mm.checks.training import (
    check_num_classes,
    head_num_classes,
    training_scales,
    upscaling,
    warmup_iterations,
    warn_about_run,
)

from conftest import REPO_ROOT, load_tool

DET_TEMPLATE = osp.join(REPO_ROOT, 'configs', 'det', 'custom', 'maskrcnn_focalnet_t_custom.py')
SEG_TEMPLATE = osp.join(REPO_ROOT, 'configs', 'seg', 'custom', 'upernet_focalnet_t_custom.py')

#: coco_mini category -> the custom set's name for it
DET_RENAME = {'person': 'walker', 'bottle': 'flask', 'bear': 'grizzly', 'motorcycle': 'moped'}
DET_CLASSES = tuple(DET_RENAME.values())
#: custom segmentation class (value i + 1 in the label maps) <- CamVid classes; the rest is 0
SEG_MERGE = {'road': ('Road', 'LaneMkgsDriv'), 'car': ('Car', 'SUVPickupTruck', 'Truck_Bus'),
             'building': ('Building', 'Wall'), 'sky': ('Sky', )}
SEG_CLASSES = tuple(SEG_MERGE)

# a FocalNet-T model shrunk for CPU seconds (no ImageNet weights: focalnet:// is not needed here)
TINY_BACKBONE = ['model.backbone.init_cfg=None', 'model.backbone.embed_dim=16',
                 'model.backbone.depths=[1,1,1,1]']
TINY_DET = TINY_BACKBONE + [
    'model.neck.in_channels=[16,32,64,128]', 'model.neck.out_channels=32',
    'model.rpn_head.in_channels=32', 'model.rpn_head.feat_channels=32',
    'model.roi_head.bbox_roi_extractor.out_channels=32', 'model.roi_head.bbox_head.in_channels=32',
    'model.roi_head.bbox_head.fc_out_channels=64',
    'model.roi_head.mask_roi_extractor.out_channels=32', 'model.roi_head.mask_head.in_channels=32',
    'model.roi_head.mask_head.conv_out_channels=32',
    'model.train_cfg.rpn.sampler.num=64', 'model.train_cfg.rcnn.sampler.num=32',
    # an untrained model scores every class alike: keep its boxes, so there is something to match
    'model.test_cfg.rcnn.score_thr=0.0', 'model.test_cfg.rcnn.max_per_img=20',
    'model.test_cfg.rpn.nms_pre=200', 'model.test_cfg.rpn.max_per_img=100',
    'train_dataloader.batch_size=1', 'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False', 'val_dataloader.batch_size=2',
    'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
    'default_hooks.logger.interval=1', 'randomness.seed=0']
TINY_SEG = TINY_BACKBONE + [
    'model.decode_head.in_channels=[16,32,64,128]', 'model.decode_head.channels=16',
    'model.auxiliary_head.in_channels=64', 'model.auxiliary_head.channels=16',
    'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
    'default_hooks.logger.interval=1', 'randomness.seed=0']


train_tool, test_tool, infer_tool = (load_tool('tools/train.py'), load_tool('tools/test.py'),
                                     load_tool('tools/infer.py'))
browse_tool = load_tool('tools/browse_dataset.py')
confusion_tool = load_tool('tools/analysis_tools/confusion_matrix.py')


def edit_template(template, out_path, **values):
    """What the docs tell a user to do: copy the template, change the values of its edit block
    (the copy lives in tmp_path, so its relative _base_ becomes absolute)."""
    with open(template) as f:
        text = f.read()
    base = lambda m: f"_base_ = {osp.abspath(osp.join(osp.dirname(template), m[1]))!r}"  # noqa: E731
    text = re.sub(r"^_base_ = '(.*)'$", base, text, flags=re.M)
    for name, value in values.items():
        text, count = re.subn(rf'^{name} = .*$', f'{name} = {value!r}', text, flags=re.M)
        assert count == 1, f'{template} has no single "{name} = ..." line to edit'
    out_path.write_text(text)
    return str(out_path)


def make_det_set(coco_mini, root):
    """coco_mini as a 4-class COCO-format set with new names and ids (val: its 6 images, 5 of
    them hold these classes; train: the same twice)."""
    with open(osp.join(coco_mini, 'annotations.json')) as f:
        coco = json.load(f)
    old_ids = {c['name']: c['id'] for c in coco['categories']}
    new_id = {old_ids[old]: i + 1 for i, old in enumerate(DET_RENAME)}
    categories = [dict(id=i + 1, name=new, supercategory='thing') for i, new in enumerate(DET_CLASSES)]
    annotations = [dict(a, category_id=new_id[a['category_id']]) for a in coco['annotations']
                   if a['category_id'] in new_id]
    os.makedirs(root / 'annotations')
    for split, copies in (('train', 2), ('val', 1)):
        os.symlink(osp.join(coco_mini, 'images'), root / split)
        # the train split lists every image twice (new ids): 10 iterations an epoch at batch 1
        images = [dict(image, id=image['id'] + copy * 10 ** 7) for copy in range(copies)
                  for image in coco['images']]
        objects = [dict(a, id=a['id'] + copy * 10 ** 7, image_id=a['image_id'] + copy * 10 ** 7)
                   for copy in range(copies) for a in annotations]
        with open(root / 'annotations' / f'{split}.json', 'w') as f:
            json.dump(dict(images=images, annotations=objects, categories=categories), f)
    return len(annotations)


def det_config(tmp_path, root, **values):
    values = dict(dict(data_root=str(root) + '/', classes=DET_CLASSES, image_scale=(160, 128),
                       max_epochs=2), **values)
    return edit_template(DET_TEMPLATE, tmp_path / 'maskrcnn_focalnet_t_mine.py', **values)


def make_seg_set(camvid_mini, root):
    """camvid_mini at 1/4 size in mmseg's img_dir/ann_dir layout, labels 0 (unlabelled) + 4 classes;
    train: the first 4 frames and their mirror images, val: the last 2 frames."""
    with open(osp.join(camvid_mini, 'codes.txt')) as f:
        codes = [line.strip() for line in f if line.strip()]
    lut = np.zeros(256, np.uint8)
    for value, members in enumerate(SEG_MERGE.values(), start=1):
        for member in members:
            lut[codes.index(member)] = value
    frames = sorted(glob.glob(osp.join(camvid_mini, 'images', '*.png')))
    for split, chosen in (('train', frames[:4]), ('val', frames[3:])):
        os.makedirs(root / 'img_dir' / split)
        os.makedirs(root / 'ann_dir' / split)
        for path in chosen:
            name = osp.basename(path)
            image = Image.open(path).convert('RGB')
            size = (image.width // 4, image.height // 4)
            image = image.resize(size, Image.BILINEAR)
            label = Image.fromarray(lut[np.array(Image.open(
                osp.join(camvid_mini, 'labels', name[:-4] + '_P.png')).resize(size, Image.NEAREST))])
            pairs = [(name, image, label)]
            if split == 'train':  # and mirrored: 8 frames, 4 iterations an epoch at batch 2
                pairs.append(('m' + name, image.transpose(Image.FLIP_LEFT_RIGHT),
                              label.transpose(Image.FLIP_LEFT_RIGHT)))
            for out_name, out_image, out_label in pairs:
                out_image.save(root / 'img_dir' / split / out_name)
                out_label.save(root / 'ann_dir' / split / out_name)
    return frames


def seg_config(tmp_path, root, **values):
    values = dict(dict(data_root=str(root) + '/', classes=SEG_CLASSES,
                       palette=[(128, 64, 128), (0, 0, 142), (70, 70, 70), (70, 130, 180)],
                       reduce_zero_label=True, img_suffix='.png', seg_map_suffix='.png',
                       image_scale=(240, 180), crop_size=(64, 64), max_epochs=5), **values)
    return edit_template(SEG_TEMPLATE, tmp_path / 'upernet_focalnet_t_mine.py', **values)


def error_of(call):
    with pytest.raises(SystemExit) as exc:
        call()
    message = str(exc.value.code)
    assert message.startswith('error: ') and '\n' not in message, message
    return message


# --------------------------------------------------------------------------- templates (fast)
@pytest.mark.parametrize('template,values,heads', [
    (DET_TEMPLATE, dict(classes=('a', 'b', 'c', 'd', 'e'), max_epochs=24),
     ['model.roi_head.bbox_head.num_classes', 'model.roi_head.mask_head.num_classes']),
    (SEG_TEMPLATE, dict(classes=('a', 'b', 'c', 'd', 'e'), palette=[(0, 0, 0)] * 5, max_epochs=24),
     ['model.decode_head.num_classes', 'model.auxiliary_head.num_classes']),
])
def test_template_derives_heads_and_schedule_from_its_edit_block(tmp_path, template, values, heads):
    cfg = Config.fromfile(edit_template(template, tmp_path / 'mine.py', **values))
    assert dict(head_num_classes(cfg.model)) == {h: 5 for h in heads}
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert tuple(cfg[loader].dataset.metainfo.classes) == values['classes']
    check_num_classes(cfg, ('train_dataloader', 'val_dataloader', 'test_dataloader'))
    assert cfg.model.backbone.init_cfg.checkpoint == 'focalnet://tiny_lrf'
    # schedule: epochs, validation each epoch, warm-up over the first 10 % in iterations
    assert cfg.train_cfg.type == 'ResumableEpochBasedTrainLoop' and cfg.train_cfg.max_epochs == 24
    assert cfg.train_cfg.val_interval == 1
    warmup, decay = cfg.param_scheduler
    assert warmup.type == 'LinearWarmupLR' and warmup.share == 0.1 and 'end' not in warmup
    assert warmup_iterations(cfg.param_scheduler, epoch_length=50, run_iters=24 * 50) == (
        'LinearWarmupLR', 120, 120, 'iteration')
    assert decay.end == 24
    if decay.type == 'MultiStepLR':  # at 3/4 and 11/12 of the run, as the 3x recipe's 27/33 of 36
        assert decay.milestones == [18, 22]
    checkpoint = cfg.default_hooks.checkpoint
    assert checkpoint.save_best in ('coco/bbox_mAP', 'mIoU') and checkpoint.max_keep_ckpts == 1


def test_templates_train_from_scratch_and_name_their_folders_in_the_edit_block(tmp_path):
    """pretrained=None: no weights to fetch (offline); the seg folders are edit-block values, and
    its --tta scales follow image_scale."""
    det = Config.fromfile(edit_template(DET_TEMPLATE, tmp_path / 'det.py', pretrained=None))
    assert det.model.backbone.init_cfg is None
    seg = Config.fromfile(edit_template(SEG_TEMPLATE, tmp_path / 'seg.py', pretrained=None,
                                        train_img_dir='images/training',
                                        train_ann_dir='labels/training',
                                        val_img_dir='images/validation',
                                        val_ann_dir='labels/validation', image_scale=(640, 480)))
    assert seg.model.backbone.init_cfg is None
    assert seg.train_dataloader.dataset.data_prefix == dict(img_path='images/training',
                                                            seg_map_path='labels/training')
    assert seg.val_dataloader.dataset.data_prefix == dict(img_path='images/validation',
                                                          seg_map_path='labels/validation')
    assert 'data/my_seg/labels/validation/' in seg.dataset_layout_hint
    # --tta: multi-scale around image_scale (not around each image's own, possibly large, size)
    resizes = seg.tta_pipeline[1].transforms[0]
    assert [r.scale for r in resizes][:3] == [(320, 240), (480, 360), (640, 480)]
    assert all(r.keep_ratio and 'scale_factor' not in r for r in resizes)


def test_inheriting_a_template_with_new_classes_is_refused(tmp_path, coco_mini):
    """The pitfall the templates warn about: a child that changes only `classes`."""
    make_det_set(coco_mini, tmp_path / 'data')
    mine = det_config(tmp_path, tmp_path / 'data')
    child = tmp_path / 'child.py'
    child.write_text(f'_base_ = {mine!r}\nclasses = ("walker", "flask")\n'
                     'train_dataloader = dict(dataset=dict(metainfo=dict(classes=classes)))\n')
    message = error_of(lambda: train_tool.main([str(child), '--work-dir', str(tmp_path / 'w')]))
    assert 'model.roi_head.bbox_head.num_classes is 4' in message
    assert 'train_dataloader dataset has 2 classes' in message and 'len(classes)' in message


def test_head_for_coco_on_a_custom_set_is_refused():
    """mmdet's own recipe with only metainfo set: an 80-way head on 3 classes; and a val set left
    without metainfo (CocoDataset's 80 classes) behind a head that was fixed."""
    cfg = Config.fromfile(DET_TEMPLATE)
    cfg.merge_from_dict({'model.roi_head.bbox_head.num_classes': 80})
    with pytest.raises(ValueError, match=r'bbox_head.num_classes is 80 but the train_dataloader '
                                         r"dataset has 2 classes \('cat', 'dog'\)"):
        check_num_classes(cfg, ('train_dataloader', ))
    cfg = Config.fromfile(DET_TEMPLATE)
    cfg.val_dataloader.dataset.pop('metainfo')
    check_num_classes(cfg, ('train_dataloader', ))
    with pytest.raises(ValueError, match=r'is 2 but the val_dataloader dataset has 80 classes'):
        check_num_classes(cfg, ('train_dataloader', 'val_dataloader'))


def test_wrong_data_root_is_one_line(tmp_path):
    missing = str(tmp_path / 'no_such_set') + '/'
    det = edit_template(DET_TEMPLATE, tmp_path / 'det.py', data_root=missing)
    message = error_of(lambda: train_tool.main([det, '--work-dir', str(tmp_path / 'w')]))
    assert f'{missing}annotations/train.json not found' in message and 'edit data_root' in message
    seg = edit_template(SEG_TEMPLATE, tmp_path / 'seg.py', data_root=missing)
    message = error_of(lambda: train_tool.main([seg, '--work-dir', str(tmp_path / 'w')]))
    assert f'{missing}img_dir/train not found' in message and 'edit data_root' in message
    message = error_of(lambda: browse_tool.main([seg, '--out', str(tmp_path / 'b')]))
    assert f'{missing}img_dir/train not found' in message


@pytest.mark.slow  # builds a Runner
def test_unavailable_weights_stop_train_and_infer_with_one_line(tmp_path, coco_mini, monkeypatch):
    """Offline without a weights folder: one `error:` line that names the download command and
    how to train from scratch, no traceback."""
    from focalnet_mm.weights import sources
    closed = 'http://127.0.0.1:9/focalnet_tiny_lrf.pth'  # discard port: connection refused
    monkeypatch.setitem(sources.WEIGHT_SOURCES, 'tiny_lrf', (sources.Source(closed, 'official'), ))
    monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / 'cache'))
    monkeypatch.delenv(sources.OFFLINE_ENV, raising=False)
    make_det_set(coco_mini, tmp_path / 'data')
    config = det_config(tmp_path, tmp_path / 'data')
    # the tiny model still asks for the ImageNet weights (init_cfg kept): the fetch fails before
    # any weight is loaded, so their shapes never meet the narrow backbone's
    options = [o for o in TINY_DET if o != 'model.backbone.init_cfg=None']
    message = error_of(lambda: train_tool.main([config, '--work-dir', str(tmp_path / 'w'),
                                                '--cfg-options', *options]))
    assert f'{closed} (' in message and 'focalnet-download-weights tiny_lrf --dir DIR' in message
    assert message.endswith('--cfg-options model.backbone.init_cfg=None')
    message = error_of(lambda: infer_tool.main([osp.join(REPO_ROOT, 'demo', 'demo.jpg'), config,
                                                '--weights', 'focalnet://tiny_lrf',
                                                '--out-dir', str(tmp_path / 'infer')]))
    assert f'{closed} (' in message


@pytest.mark.slow  # builds a Runner
def test_warnings_for_long_warmup_and_oversized_scale(tmp_path, coco_mini):
    """The issue's run: the 500-iteration warm-up of the recipe in a run of a few iterations, and
    images blown up far beyond their own size (coco_mini: 640 px at most)."""
    from focalnet_mm.runner_building import build_runner_from_cfg
    make_det_set(coco_mini, tmp_path / 'data')
    config = det_config(tmp_path, tmp_path / 'data', image_scale=(2666, 1600), max_epochs=1)
    cfg = train_tool.make_config(train_tool.parse_args(
        [config, '--work-dir', str(tmp_path / 'w'), '--cfg-options'] + TINY_DET +
        ['visualizer.name=custom_warn']))
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500)]
    warnings = warn_about_run(build_runner_from_cfg(cfg))
    assert len(warnings) == 2, warnings
    # 2 x 5 images hold the 4 categories (one image has none: filtered out), batch 1, 1 epoch
    assert warnings[0].startswith('the LinearLR warm-up lasts 500 iterations but the whole run has '
                                  '10 (1 epochs x 10 iterations)')
    # median image of the 5: 640x427 (long x short) -> scale (2666, 1600): min(2666/640, 1600/427)
    assert 'resizes to (2666, 1600) but the images are about 640x427 (median of 10)' in warnings[1]
    assert '3.7x enlarged' in warnings[1] and 'image_scale' in warnings[1]


class Batches(list):
    dataset = None  # no dataset: no scale check


def test_warmup_checks_on_a_run():
    """The warm-up against the run as the Runner will count it (no model needed)."""
    warned = []

    def runner(schedulers, epoch_length, max_epochs):
        loop = SimpleNamespace(dataloader=Batches(range(epoch_length)), max_epochs=max_epochs,
                               max_iters=epoch_length * max_epochs)
        return SimpleNamespace(train_loop=loop, cfg=Config(dict(param_scheduler=schedulers)),
                               logger=SimpleNamespace(warning=warned.append))

    # the templates' warm-up is a share of the run: never refused, never longer than the run
    for template in (SEG_TEMPLATE, DET_TEMPLATE):  # (the warm-up does not depend on max_epochs)
        schedulers = Config.fromfile(template).param_scheduler
        for max_epochs, epoch_length in ((50, 2), (1, 3), (4, 2), (1, 1), (1, 2)):
            assert warn_about_run(runner(schedulers, epoch_length, max_epochs)) == []
    # a LinearLR over a share of the epochs that rounds below 2 iterations: refused, naming the fix
    short = [dict(type='LinearLR', start_factor=1e-3, by_epoch=True, convert_to_iter_based=True,
                  begin=0, end=0.4)]
    for epoch_length, iterations in ((2, 0), (4, 1)):  # int(0.4 * epoch_length)
        with pytest.raises(ValueError, match=rf'^the LinearLR warm-up spans {iterations} iteration\(s\) '
                                             rf'\({epoch_length} iterations per epoch\).* make it at '
                                             r"least 2 iterations, or warm up over a share of the run "
                                             r"\(type='LinearWarmupLR'"):
            warn_about_run(runner(short, epoch_length, 4))
    assert warn_about_run(runner(short, 5, 4)) == []  # 2 iterations
    # the run: the COCO recipe's 500-iteration warm-up in one epoch of 30 iterations
    recipe = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500)]
    [warning] = warn_about_run(runner(recipe, 30, 1))
    assert warning.startswith('the LinearLR warm-up lasts 500 iterations but the whole run has 30 '
                              '(1 epochs x 30 iterations): the learning rate does not reach its set '
                              "value before the last iteration; end the warm-up at a fraction of the "
                              "run (type='LinearWarmupLR'")
    assert warned == [warning] and '\n' not in warning


def test_warmup_warning_of_an_iteration_based_run():
    """mmengine's IterBasedTrainLoop (the seg recipes): its run is max_iters, not epochs of the
    loader (its max_epochs is a placeholder 1)."""
    from mmengine.runner import IterBasedTrainLoop
    loop = IterBasedTrainLoop.__new__(IterBasedTrainLoop)  # the checks read only these
    loop.dataloader, loop._max_iters, loop._max_epochs = Batches(range(3)), 4, 1
    recipe = [dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=4)]
    [warning] = warn_about_run(SimpleNamespace(train_loop=loop, cfg=Config(dict(param_scheduler=recipe)),
                                               logger=SimpleNamespace(warning=lambda line: None)))
    assert warning.startswith('the LinearLR warm-up lasts 4 iterations but the whole run has 4 '
                              '(train_cfg.max_iters): ')
    assert 'epoch' not in warning and 'convert_to_iter_based' not in warning


def test_linear_warmup_fits_any_run(monkeypatch):
    """LinearWarmupLR over 10 % of the run that the Runner gives it: at least 2 iterations (what a
    linear warm-up needs to reach the set value), none in a run of one; one line when not 10 %."""
    import torch
    from mmengine.registry import PARAM_SCHEDULERS

    from focalnet_mm.engine import warmup
    assert [warmup.warmup_steps(0.1, span) for span in (1, 2, 3, 20, 120)] == [0, 2, 2, 2, 12]
    lines = []
    monkeypatch.setattr(warmup, 'print_log', lambda line, **kwargs: lines.append(line))
    param = torch.nn.Parameter(torch.ones(1))
    for span, warm, rates in ((3, 2, [1e-3, 1.0, 1.0]), (1, 1, [1.0]), (30, 3, [1e-3, 0.5005, 1.0])):
        optimizer = torch.optim.SGD([param], lr=1.0)
        scheduler = PARAM_SCHEDULERS.build(
            dict(type='LinearWarmupLR', share=0.1, start_factor=1e-3, by_epoch=False, end=span),
            default_args=dict(optimizer=optimizer))
        assert scheduler.end == warm
        seen = []
        for _ in range(len(rates)):
            seen.append(optimizer.param_groups[0]['lr'])
            optimizer.step()
            scheduler.step()
        assert seen == pytest.approx(rates)
    assert lines == ['LinearWarmupLR: a warm-up over 0.1 of a run of 3 iterations would last 0.3 '
                     'iterations; it lasts 2 (at least 2, at most the run)',
                     'LinearWarmupLR: the run has 1 iteration, too short for a warm-up: trained at '
                     'the set learning rate']


def test_scale_and_warmup_arithmetic():
    from mmcv.transforms import RandomChoice, RandomChoiceResize, RandomResize, Resize
    pipeline = [Resize(scale=(1333, 800), keep_ratio=True),
                RandomChoice(transforms=[[RandomChoiceResize(scales=[(480, 1333), (800, 1333)],
                                                             keep_ratio=True)],
                                         [RandomResize(scale=(640, 480), ratio_range=(0.8, 1.2))]])]
    assert list(training_scales(pipeline)) == [((1333, 800), True), ((480, 1333), True),
                                               ((800, 1333), True), ((640, 480), False)]
    # COCO's recipe on COCO's 640x480: 1.67x (no warning); the 512x384 photos: 2.08x
    assert upscaling((1333, 800), True, (640, 480)) == pytest.approx(800 / 480)
    assert upscaling((1333, 800), True, (512, 384)) == pytest.approx(800 / 384)
    assert upscaling((1024, 1024), False, (512, 512)) == pytest.approx(2.0)
    # by_epoch defaults to True in mmengine (one step per epoch); a linear decay is no warm-up
    assert warmup_iterations([dict(type='LinearLR', end=2)], 30) == ('LinearLR', 60, 2, 'epoch')
    assert warmup_iterations([dict(type='LinearLR', end=0.5, convert_to_iter_based=True)], 30) == (
        'LinearLR', 15, 15, 'iteration')
    assert warmup_iterations([dict(type='LinearLR', start_factor=1.0, end_factor=0.1, end=9,
                                   by_epoch=False)], 30) is None


# --------------------------------------------------------------------------- end to end (slow)
def read_log(work_dir):
    [path] = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(path) as f:
        return f.read()


@pytest.mark.slow
def test_custom_detection_set_train_test_infer_browse(tmp_path, coco_mini, custom_det_run):
    # make_det_set + det_config trained by tools/train.py with TINY_DET (conftest: once per run,
    # shared with test_class_order)
    num_objects = custom_det_run['num_objects']
    assert num_objects == 28  # 10 person, 14 bottle, 3 bear, 1 motorcycle
    config, work_dir = custom_det_run['config'], custom_det_run['work_dir']
    # 2 x 5 images with objects, batch 1, 2 epochs; warm-up 10 % of 20 = 2 iterations
    assert custom_det_run['epoch'] == 2 and custom_det_run['iter'] == 20
    log = custom_det_run['log']
    assert 'warm-up lasts' not in log and 'enlarged' not in log  # the template fits the run
    # the warm-up ended within the first epoch: the LR reached its set value (AdamW 1e-4)
    lrs = [float(v) for v in
           re.findall(r'Epoch\(train\)\s+\[1\]\[\s*\d+/10\]\s+base_lr: \S+\s+lr: (\S+)', log)]
    assert len(lrs) == 10 and lrs[0] < 1e-6 and max(lrs) == pytest.approx(1e-4)
    # validated every epoch, per-class AP named by the custom classes, best epoch kept
    assert len(re.findall(r'Epoch\(val\) \[\d\]\[3/3\] .*coco/bbox_mAP: ', log)) == 2
    assert all(name in log for name in DET_CLASSES)
    best = glob.glob(osp.join(work_dir, 'best_coco_bbox_mAP_epoch_*.pth'))
    assert len(best) == 1, os.listdir(work_dir)

    dump = str(tmp_path / 'results.pkl')
    metrics = test_tool.main([config, osp.join(work_dir, 'epoch_2.pth'), '--work-dir',
                              str(tmp_path / 'test'), '--out', dump, '--cfg-options'] + TINY_DET +
                             ['visualizer.name=custom_det_test'])
    for name in DET_CLASSES:
        assert f'coco/{name}_precision' in metrics, sorted(metrics)
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0

    matrix = confusion_tool.main([config, dump, str(tmp_path / 'cm'), '--score-thr', '0.0',
                                  '--cfg-options'] + TINY_DET)
    assert matrix.shape == (5, 5)
    # every ground-truth object is counted once as missed or at least once as matched
    assert matrix[:4].sum() >= num_objects and matrix[:4, 4].sum() <= num_objects
    assert osp.getsize(tmp_path / 'cm' / 'confusion_matrix.png') > 0

    image = sorted(glob.glob(osp.join(coco_mini, 'images', '*.jpg')))[0]
    weights = osp.join(work_dir, 'epoch_2.pth')
    infer_config = tmp_path / 'infer.py'  # infer.py takes no --cfg-options: the tiny model in a child
    infer_config.write_text(f'_base_ = {config!r}\n' + tiny_as_config(TINY_DET))
    [prediction] = infer_tool.main([image, str(infer_config), '--weights', weights, '--device', 'cpu',
                                    '--out-dir', str(tmp_path / 'infer'), '--pred-score-thr', '0'])
    assert len(prediction['labels']) > 0 and max(prediction['labels']) < 4
    assert len(glob.glob(str(tmp_path / 'infer' / 'vis' / '*'))) == 1

    written = browse_tool.main([config, '--out', str(tmp_path / 'browse'), '--max', '3'])
    assert len(written) == 3 and all(w.endswith('.png') and osp.getsize(w) > 0 for w in written)
    painted = np.array(Image.open(written[0]))
    assert painted.ndim == 3 and max(painted.shape[:2]) <= 160 * 1.2 + 1  # the pipeline's scale


def tiny_as_config(options):
    """The model.* entries of --cfg-options as a config body (infer.py has no --cfg-options)."""
    from mmengine.config import DictAction
    merged = Config(dict(model=dict()))
    for option in options:
        key, value = option.split('=', 1)
        if key.startswith('model.'):
            merged.merge_from_dict({key: DictAction._parse_iterable(value)})
    return f'model = {merged.to_dict()["model"]!r}\n'


def test_the_runner_formats_its_config_once_per_content(monkeypatch):
    """mmengine's Runner asks for the config's text at start and in every checkpoint it saves, and
    yapf takes seconds on a template whose data_root is a long path (the runs below): the runners
    of focalnet_mm keep the text while the config's content stays the same."""
    import copy
    import pickle

    from focalnet_mm.engine.runners import formatted_once
    plain = Config.pretty_text
    formatted = []
    monkeypatch.setattr(Config, 'pretty_text',
                        property(lambda cfg: formatted.append(1) or plain.fget(cfg)))
    cfg = Config(dict(data_root='/a/long/path/' * 8, train_cfg=dict(max_epochs=2)))
    text = cfg.pretty_text
    runner_cfg = copy.deepcopy(formatted_once(cfg))  # what the Runner keeps
    assert [runner_cfg.pretty_text for _ in range(3)] == [text] * 3 and len(formatted) == 2
    runner_cfg.train_cfg.max_epochs = 7  # a changed content is formatted again
    assert 'max_epochs=7' in runner_cfg.pretty_text and len(formatted) == 3
    assert pickle.loads(pickle.dumps(runner_cfg)).pretty_text == runner_cfg.pretty_text
    assert 'max_epochs=2' in cfg.pretty_text  # the original is left as it was
    assert '_formatted' not in runner_cfg.keys()  # the kept text is no config key


@pytest.mark.slow
def test_custom_segmentation_set_train_test_infer_browse(tmp_path, camvid_mini):
    frames = make_seg_set(camvid_mini, tmp_path / 'data')
    config = seg_config(tmp_path, tmp_path / 'data')
    work_dir = str(tmp_path / 'work')
    runner = train_tool.main([config, '--work-dir', work_dir, '--cfg-options'] + TINY_SEG +
                             ['visualizer.name=custom_seg_train'])
    assert runner.epoch == 5 and runner.iter == 20  # 8 frames, batch 2; warm-up 10 % of 20 = 2
    log = read_log(work_dir)
    assert 'warm-up lasts' not in log and 'enlarged' not in log
    assert len(re.findall(r'Epoch\(val\) \[\d\]\[2/2\]\s+aAcc', log)) == 5
    # the warm-up ended: the LR reached its set value (AdamW 6e-5) before the poly decay took it
    lrs = [float(v) for v in re.findall(r'Epoch\(train\) \[\d\]\[\d/4\]\s+base_lr: \S+ lr: (\S+)', log)]
    assert len(lrs) == 20 and max(lrs) > 5e-5
    assert len(glob.glob(osp.join(work_dir, 'best_mIoU_epoch_*.pth'))) == 1

    dump = str(tmp_path / 'results.pkl')
    metrics = test_tool.main([config, osp.join(work_dir, 'epoch_5.pth'), '--work-dir', work_dir,
                              '--out', dump, '--cfg-options'] + TINY_SEG +
                             ['visualizer.name=custom_seg_test'])
    assert set(metrics) >= {'aAcc', 'mIoU', 'mAcc'}
    # the per-class table of the test log names the custom classes
    test_log = sorted(glob.glob(osp.join(work_dir, '*', '*.log')))[-1]
    table = open(test_log).read().split('per class results:')[-1]
    assert all(re.search(rf'\|\s+{name}\s+\|', table) for name in SEG_CLASSES), table
    with open(dump, 'rb') as f:
        results = pickle.load(f)
    gt = results[0]['gt_sem_seg']['data'].numpy()
    assert set(np.unique(gt)) <= {0, 1, 2, 3, 255}  # 0 (unlabelled) became 255, classes 0..3

    infer_config = tmp_path / 'infer.py'
    infer_config.write_text(f'_base_ = {config!r}\n' + tiny_as_config(TINY_SEG))
    image = str(tmp_path / 'data' / 'img_dir' / 'val' / osp.basename(frames[-1]))
    [prediction] = infer_tool.main([image, str(infer_config), '--weights',
                                    osp.join(work_dir, 'epoch_5.pth'), '--device', 'cpu',
                                    '--out-dir', str(tmp_path / 'infer')])
    assert prediction['sem_seg_shape'] == [180, 240] and max(prediction['classes_present']) < 4
    assert len(glob.glob(str(tmp_path / 'infer' / 'vis' / '*'))) == 1

    written = browse_tool.main([config, '--out', str(tmp_path / 'browse'), '--max', '0'])
    assert len(written) == 8 and all(w.endswith('.png') for w in written)
    assert np.array(Image.open(written[0])).shape[:2] == (64, 64)  # training crops


def test_browse_classification_set(tmp_path):
    """browse_dataset.py serves mmpretrain configs too: the image with its label written on it."""
    make = load_tool('tools/data/make_demo_imagenet.py', 'custom_make_demo_imagenet')
    root = str(tmp_path / 'imagenet')
    make.write_dataset(root, classes=2, train_per_class=2, val_per_class=1, size=64, seed=0)
    config = osp.join(REPO_ROOT, 'configs', 'cls', 'focalnet_p4_e64_tinyimagenet_64x64.py')
    written = browse_tool.main([config, '--out', str(tmp_path / 'browse'), '--max', '2',
                                '--cfg-options', f'train_dataloader.dataset.data_root={root}'])
    assert len(written) == 2
    painted = np.array(Image.open(written[0]).convert('RGB'))
    assert painted.shape[2] == 3 and painted.std() > 0
