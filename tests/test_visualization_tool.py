"""tools/analysis_tools/visualize_modulation.py on the real coco_mini images (det/cls configs)."""
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from focalnet_mm.visualization import load_rgb, per_image_size_px

from conftest import load_tool

SHORT_SIDE = 96
#: fewer blocks keep the shared CI CPUs fast; the config, registry and data path stay real
SHALLOW = ['--cfg-options', 'model.backbone.depths=[1,1,2,1]']


def visualize_modulation():
    return load_tool('tools/analysis_tools/visualize_modulation.py')


def detection_config(repo_root, tmp_path):
    """The README's Mask R-CNN config (tiny_lrf, windows 9) or, before it exists, an inline one."""
    path = osp.join(repo_root, 'configs', 'maskrcnn_focalnet_t_3x.py')
    if osp.isfile(path):
        return path, 3
    inline = tmp_path / 'det.py'
    inline.write_text(
        "_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'\n"
        "custom_imports = dict(imports=['focalnet_mm'], allow_failed_imports=False)\n"
        "model = dict(backbone=dict(_delete_=True, type='FocalNet', arch='tiny_srf',\n"
        "                           focal_windows=9),\n"
        "             neck=dict(in_channels=[96, 192, 384, 768]))\n")
    return str(inline), 2


CLASSIFICATION_CONFIG = """
default_scope = 'mmpretrain'
custom_imports = dict(imports=['focalnet_mm'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(num_classes=1000, mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(type='FocalNet', arch='tiny_srf', out_indices=(3,)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=768,
              loss=dict(type='CrossEntropyLoss')))
"""


def png(path):
    return np.asarray(Image.open(path).convert('RGB')).astype(np.float32)


def panel(pixels, row, col, width, height, cols):
    """Centre crop of one heat-map panel of the per-image figure (layout: 2 rows x cols)."""
    cell_w, cell_h = width / cols, height / 2
    cy, cx = int(cell_h * row + cell_h * 0.55), int(cell_w * col + cell_w * 0.4)
    return pixels[cy - 20:cy + 20, cx - 40:cx + 40]


@pytest.mark.slow  # a detector on six real images; the quick loop draws one classification image
def test_tool_with_detection_config_on_coco_mini(coco_mini, repo_root, tmp_path):
    config, levels = detection_config(repo_root, tmp_path)
    images_dir = osp.join(coco_mini, 'images')
    out = tmp_path / 'det'
    written = visualize_modulation().main(
        [config, '--images', images_dir, '--out', str(out), '--short-side', str(SHORT_SIDE),
         *SHALLOW])

    names = sorted(os.listdir(images_dir))
    assert len(names) == 6
    expected = [str(out / (osp.splitext(n)[0] + '.png')) for n in names]
    expected.append(str(out / 'contact_sheet.png'))
    assert written == expected and all(osp.isfile(p) for p in written)
    num_panels = 1 + (levels + 1) + 1
    cols = (num_panels + 1) // 2
    for name, path in zip(names, written):
        height, width = load_rgb(osp.join(images_dir, name), SHORT_SIDE).shape[:2]
        assert min(height, width) == SHORT_SIDE
        pixels = png(path)
        # 3 columns of 3.95 in at 100 dpi; height follows the image's aspect ratio
        assert pixels.shape[1] == 395 * cols
        assert (pixels.shape[1], pixels.shape[0]) == per_image_size_px(num_panels, height, width)
        assert pixels.std() > 30
        # the gate panels carry a heat map: they differ from the plain input panel
        plain = panel(pixels, 0, 0, pixels.shape[1], pixels.shape[0], cols)
        gate = panel(pixels, 0, 1, pixels.shape[1], pixels.shape[0], cols)
        assert np.abs(plain - gate).mean() > 10
    sheet = png(written[-1])
    assert sheet.shape[0] > 6 * 150 and sheet.shape[1] == num_panels * 220 and sheet.std() > 30


def test_tool_with_classification_config_one_image(coco_mini, repo_root, tmp_path):
    config = tmp_path / 'cls.py'
    config.write_text(CLASSIFICATION_CONFIG)
    image = osp.join(coco_mini, 'images', '000000000089.jpg')
    out = tmp_path / 'cls'
    written = visualize_modulation().main(
        [str(config), '--images', image, '--out', str(out), '--short-side', '96',
         '--stage', '1', '--block', '0', *SHALLOW])
    assert written == [str(out / '000000000089.png')]
    assert sorted(os.listdir(out)) == ['000000000089.png']  # no contact sheet for one image
    pixels = png(written[0])
    height, width = load_rgb(image, 96).shape[:2]
    # tiny_srf: 2 levels -> input, 3 gates, modulator = 5 panels in 3 columns
    assert (pixels.shape[1], pixels.shape[0]) == per_image_size_px(5, height, width) == (1185, 615)
    assert pixels.std() > 30


def test_tool_refuses_bad_input_with_the_flag_named(coco_mini, repo_root, tmp_path):
    tool = visualize_modulation()
    config = tmp_path / 'cls.py'
    config.write_text(CLASSIFICATION_CONFIG)
    with pytest.raises(FileNotFoundError, match='--images'):
        tool.main([str(config), '--images', str(tmp_path / 'missing'), '--out', str(tmp_path)])
    with pytest.raises(ValueError, match='--stage 7'):
        tool.main([str(config), '--images', osp.join(coco_mini, 'images'), '--out',
                   str(tmp_path / 'x'), '--stage', '7'])


def test_checkpoint_is_loaded_before_drawing(repo_root, tmp_path):
    import torch

    tool = visualize_modulation()
    config = tmp_path / 'cls.py'
    config.write_text(CLASSIFICATION_CONFIG)
    source, target = tool.build_model(str(config)), tool.build_model(str(config))
    torch.save({'state_dict': source.state_dict(), 'meta': {}}, tmp_path / 'trained.pth')
    tool.load_weights(target, str(tmp_path / 'trained.pth'))
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(FileNotFoundError, match='CHECKPOINT'):
        tool.load_weights(target, str(tmp_path / 'missing.pth'))
