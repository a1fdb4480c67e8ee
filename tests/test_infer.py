"""tools/infer.py: the libraries' inferencers on FocalNet det / seg / cls configs, with whole-model
checkpoints and FocalNet-format files."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from conftest import REPO_ROOT, load_tool

DET_DEMO = osp.join(REPO_ROOT, 'configs', 'demo', 'maskrcnn_focalnet_t_demo.py')
SEG_DEMO = osp.join(REPO_ROOT, 'configs', 'seg', 'demo', 'upernet_focalnet_t_srf_ade_demo.py')
CLS_T_SRF = osp.join(REPO_ROOT, 'configs', 'cls', 'focalnet_t_srf_in1k.py')

infer = load_tool('tools/infer.py')


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in (('a.jpg', (96, 128)), ('b.png', (120, 90))):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
    (folder / 'notes.txt').write_text('not an image')
    return folder


def build_model(config):
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


@pytest.mark.slow  # a Mask R-CNN FocalNet-T built 3 times; the quick loop infers a segmentor, a classifier
def test_detector_checkpoint_paints_and_dumps_every_image(images, tmp_path):
    torch.manual_seed(0)
    model = build_model(DET_DEMO)
    checkpoint = tmp_path / 'detector.pth'
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': ('circle', 'rectangle', 'triangle')}}}, checkpoint)
    out_dir = tmp_path / 'out'
    predictions = infer.main([str(images), DET_DEMO, '--weights', str(checkpoint), '--device', 'cpu',
                              '--out-dir', str(out_dir), '--pred-score-thr', '0'])
    assert len(predictions) == 2
    assert sorted(os.listdir(out_dir / 'vis')) == ['a.jpg', 'b.png']
    assert sorted(os.listdir(out_dir / 'preds')) == ['a.json', 'b.json']
    with open(out_dir / 'preds' / 'a.json') as f:
        saved = json.load(f)
    assert {'labels', 'scores', 'bboxes', 'masks'} <= set(saved)
    assert all(0 <= label < 3 for label in saved['labels'])  # the demo's 3 classes
    # the inferencer really runs the checkpoint's weights
    _, inferencer = infer.build_inferencer(DET_DEMO, str(checkpoint), 'cpu')
    key = 'backbone.layers.0.blocks.0.modulation.f.weight'
    assert torch.equal(inferencer.model.state_dict()[key], model.state_dict()[key])


def test_official_classification_file_brings_its_head(images, tmp_path):
    torch.manual_seed(0)
    classifier = build_model(CLS_T_SRF)
    state = {k: v for k, v in classifier.backbone.state_dict().items() if not k.startswith('norm3.')}
    state.update({'norm.weight': torch.rand(768), 'norm.bias': torch.rand(768),
                  'head.weight': 0.02 * torch.randn(1000, 768), 'head.bias': torch.randn(1000)})
    official = tmp_path / 'focalnet_tiny_srf.pth'
    torch.save({'model': state}, official)
    scope, inferencer = infer.build_inferencer(CLS_T_SRF, str(official), 'cpu')
    assert scope == 'mmpretrain'
    assert torch.equal(inferencer.model.head.fc.weight, state['head.weight'])
    assert torch.equal(inferencer.model.backbone.norm3.bias, state['norm.bias'])

    out_dir = tmp_path / 'out'
    predictions = infer.main([str(images / 'a.jpg'), CLS_T_SRF, '--weights', str(official),
                              '--device', 'cpu', '--out-dir', str(out_dir)])
    assert len(predictions) == 1 and 0 <= predictions[0]['pred_label'] < 1000
    assert os.listdir(out_dir / 'vis') and os.listdir(out_dir / 'preds') == ['a.json']


def test_segmentor_writes_label_maps_and_honours_no_save_vis(images, tmp_path):
    out_dir = tmp_path / 'out'
    predictions = infer.main([str(images), SEG_DEMO, '--device', 'cpu', '--out-dir', str(out_dir),
                              '--no-save-vis'])
    assert [p['sem_seg_shape'] for p in predictions] == [[96, 128], [120, 90]]  # full size
    assert not (out_dir / 'vis').exists()
    # one label map per image, named after it (not by position), at the image's size
    assert sorted(os.listdir(out_dir / 'preds')) == ['a.png', 'b.png']
    label_map = np.asarray(Image.open(out_dir / 'preds' / 'b.png'))
    assert label_map.shape == (120, 90) and set(np.unique(label_map)) <= set(
        predictions[1]['classes_present'])


def test_inferencer_leaves_the_runners_visualizer_name_free(images, tmp_path):
    from mmengine.visualization import Visualizer
    infer.main([str(images / 'a.jpg'), SEG_DEMO, '--device', 'cpu', '--out-dir', str(tmp_path),
                '--no-save-vis', '--no-save-pred'])
    # a Runner later in this process asks for 'visualizer' and must get its own (Det/Seg) class
    assert not Visualizer.check_instance_created('visualizer') or \
        type(Visualizer.get_instance('visualizer')).__name__ != 'SegLocalVisualizer'


def test_bad_input_is_one_line(images, tmp_path, capsys):
    cases = [([str(tmp_path / 'missing.jpg'), DET_DEMO], 'input .* not found'),
             ([str(tmp_path), DET_DEMO], 'no images'),
             ([str(images), 'configs/nope.py'], 'config configs/nope.py not found'),
             ([str(images), DET_DEMO, '--weights', 'nope.pth'], 'weights nope.pth not found')]
    for argv, message in cases:
        with pytest.raises(SystemExit, match=f'^error: {message}'):
            infer.main(argv)
