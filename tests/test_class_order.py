"""Class names that match the labels on a user's COCO-format set (configs/det/custom template).

mmdet numbers the labels in the order of the JSON's categories, whatever the order of `classes`;
a `classes` listed in another order is refused before training (and by check_dataset, browse)
with the `classes = (...)` line to paste, and the pasted order names every label rightly through
training, the checkpoint, inference, the export and tools/infer.py --onnx (painted). Segmentation:
mmseg maps a data set type's classes by name (label_map), which check_dataset follows.
"""
import glob
import json
import os.path as osp
import re
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from test_custom_dataset import DET_CLASSES, TINY_DET, det_config, error_of, make_det_set, tiny_as_config

from focalnet_mm.checks import dataset_files

from conftest import load_tool

train_tool, infer_tool = load_tool('tools/train.py'), load_tool('tools/infer.py')
check_tool, browse_tool = load_tool('tools/check_dataset.py'), load_tool('tools/browse_dataset.py')
#: the custom set's classes by instance count (14 flask, 10 walker, 3 grizzly, 1 moped), not in
#: the JSON's order (walker, flask, grizzly, moped)
BY_FREQUENCY = ('flask', 'walker', 'grizzly', 'moped')
PASTE = f'classes = {DET_CLASSES!r}'


@pytest.fixture
def det_set(tmp_path, coco_mini):
    make_det_set(coco_mini, tmp_path / 'data')
    return tmp_path / 'data'


def test_label_names_follow_the_json_and_a_large_json_is_read_from_its_end(tmp_path, monkeypatch):
    categories = [dict(id=7, name='bus'), dict(id=2, name='bear'), dict(id=5, name='cat')]
    assert dataset_files.label_names(('cat', 'bus'), categories) == ('bus', 'cat')
    assert dataset_files.class_order_problem(('bus', 'bear', 'cat'), categories) is None
    assert dataset_files.class_order_problem(('bus', 'dog'), categories) is None  # class_not_in_json's
    line = dataset_files.class_order_problem(('bear', 'bus'), categories)
    assert line.endswith("label 0 is 'bus' but would be named 'bear'; set classes = ('bus', 'bear') "
                         '(and palette, if any, in that order)')
    twice = categories + [dict(id=9, name='bus')]
    assert "'bus' appears 2 times in the JSON (ids [7, 9])" in dataset_files.class_order_problem(
        ('bus', 'bear'), twice)
    # a JSON too large to parse for its categories: found from the end, past a look-alike string
    path = tmp_path / 'big.json'
    path.write_text(json.dumps(dict(images=[dict(id=1, file_name='"categories": [1]')],
                                    annotations=[], categories=categories)))
    monkeypatch.setattr(dataset_files, 'WHOLE_JSON_BYTES', 10)
    assert dataset_files.json_categories(str(path)) == categories


def test_classes_in_another_order_are_refused_with_the_order_to_paste(tmp_path, det_set, capsys):
    config = det_config(tmp_path, det_set, classes=BY_FREQUENCY)
    for tool, argv in ((train_tool, ['--work-dir', str(tmp_path / 'work')]),
                       (browse_tool, ['--out', str(tmp_path / 'browse')])):
        message = error_of(lambda tool=tool, argv=argv: tool.main([config, *argv]))
        assert message.endswith(f"label 0 is 'walker' but would be named 'flask'; set {PASTE} "
                                '(and palette, if any, in that order)'), message
    assert not osp.exists(tmp_path / 'browse')  # nothing painted with shifted names
    with pytest.raises(SystemExit) as exit_info:
        check_tool.main([config, '--nproc', '1', '--split', 'train'])
    assert exit_info.value.code == 1
    [line] = [t for t in capsys.readouterr().out.splitlines() if 'label 0 is' in t]
    assert line.startswith('error: train: 1 x classes in another order') and PASTE in line

    pasted = det_config(tmp_path, det_set, classes=DET_CLASSES)
    reports = check_tool.main([pasted, '--nproc', '1', '--split', 'train'])
    assert not any(r.crashes for r in reports)


def test_seg_classes_of_a_typed_set_map_by_name(tmp_path):
    """mmseg remaps a reordered subset of a data set type's classes by name (label_map): no label
    value is reported outside the classes, the classes left out are named."""
    from mmengine.registry import init_default_scope
    from mmseg.datasets import ADE20KDataset
    init_default_scope('mmseg')
    for folder in ('img_dir', 'ann_dir'):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / 'img_dir' / 'a.jpg')
    label = np.full((8, 8), 1, np.uint8)  # ADE20K value 1: 'wall' (reduce_zero_label)
    label[4:] = 4  # 'floor'
    label[:, :2] = 10  # 'grass' (index 9): a class left out
    Image.fromarray(label).save(tmp_path / 'ann_dir' / 'a.png')
    dataset = ADE20KDataset(data_root=str(tmp_path), data_prefix=dict(img_path='img_dir',
                            seg_map_path='ann_dir'), metainfo=dict(classes=('floor', 'wall')),
                            lazy_init=True)
    report = dataset_files.check_dataset(dataset, 'train')
    assert not report.problems.get('label_values') and not report.crashes
    assert report.per_class == {'floor': 1, 'wall': 1}
    [left_out] = report.problems['unlisted_classes']
    assert left_out.startswith('ADE20KDataset: 148 of its 150 classes')


def names_per_image(labelled, coco):
    """{image id: Counter of names} as the training's data set labels them (``labelled``: [image
    id, [classes[label], ...]] pairs) and as the JSON names the same objects."""
    by_id = {c['id']: c['name'] for c in coco['categories']}
    labelled = {image_id: Counter(names) for image_id, names in labelled}
    named = {}
    for ann in coco['annotations']:
        w, h = ann['bbox'][2:]
        if ann['image_id'] in labelled and w >= 1 and h >= 1 and ann['area'] > 0:  # mmdet's drops
            named.setdefault(ann['image_id'], Counter())[by_id[ann['category_id']]] += 1
    return labelled, {k: named.get(k, Counter()) for k in labelled}


@pytest.mark.slow  # trains and exports a tiny Mask R-CNN
def test_pasted_order_names_labels_through_training_inference_and_export(
        tmp_path, coco_mini, custom_det_run):
    # the pasted order (DET_CLASSES) trained by tools/train.py with TINY_DET (conftest: once per
    # run, shared with test_custom_dataset); its config's classes are the pasted line
    config, work_dir = custom_det_run['config'], custom_det_run['work_dir']
    assert re.search(rf'^{re.escape(PASTE)}', open(config).read(), re.M)
    with open(osp.join(custom_det_run['data_root'], 'annotations', 'train.json')) as f:
        labelled, named = names_per_image(custom_det_run['labelled'], json.load(f))
    assert labelled == named and sum(sum(c.values()) for c in labelled.values()) == 56
    checkpoint = osp.join(work_dir, 'epoch_2.pth')
    assert tuple(torch.load(checkpoint, weights_only=False)['meta']['dataset_meta']['classes']) == DET_CLASSES

    infer_config = tmp_path / 'infer.py'  # infer.py takes no --cfg-options: the tiny model in a child
    infer_config.write_text(f'_base_ = {config!r}\n' + tiny_as_config(TINY_DET))
    image = sorted(glob.glob(osp.join(coco_mini, 'images', '*.jpg')))[0]
    _, inferencer = infer_tool.build_inferencer(str(infer_config), checkpoint, 'cpu')
    assert tuple(inferencer.visualizer.dataset_meta['classes']) == DET_CLASSES

    from test_deploy import ours_traced  # (imports MMDeploy)
    out = str(tmp_path / 'deploy')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        load_tool('tools/deploy.py').main([config, checkpoint, '--out', out, '--cfg-options'] + [
            o for o in TINY_DET if o.startswith('model.')])
    assert not ours_traced(caught), ours_traced(caught)
    with open(osp.join(out, 'dataset_meta.json')) as f:
        assert tuple(json.load(f)['classes']) == DET_CLASSES

    predictions = {}
    for name, flag in (('torch', '--weights'), ('onnx', '--onnx')):
        model = checkpoint if name == 'torch' else osp.join(out, 'end2end.onnx')
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            [predictions[name]] = infer_tool.main([image, str(infer_config), flag, model, '--device',
                                                   'cpu', '--out-dir', str(tmp_path / name),
                                                   '--pred-score-thr', '0.05'])
        said = ' '.join(str(w.message) for w in caught)
        if name == 'onnx':
            assert 'randomly initialized' not in said and 'COCO classes' not in said, said
        painted = np.asarray(Image.open(tmp_path / name / 'vis' / osp.basename(image)).convert('RGB'))
        original = np.asarray(Image.open(image).convert('RGB'))
        assert painted.shape == original.shape and (painted != original).any()  # boxes drawn
    assert max(predictions['onnx']['scores']) > 0.05  # detections above the threshold were painted
    assert predictions['onnx']['labels'][:5] == predictions['torch']['labels'][:5]
    _, deployed = infer_tool.build_inferencer(str(infer_config), None, 'cpu', osp.join(out, 'end2end.onnx'))
    assert tuple(deployed.visualizer.dataset_meta['classes']) == DET_CLASSES
    assert all(isinstance(c, tuple) for c in deployed.visualizer.dataset_meta['palette'])
