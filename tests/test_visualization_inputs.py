"""Images are normalized exactly as each library's data preprocessor would, and found on disk."""
import numpy as np
import pytest
import torch

from focalnet_mm.visualization import Normalizer, list_images, load_rgb

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def preprocessors():
    from mmdet.models.data_preprocessors import DetDataPreprocessor
    from mmpretrain.models.utils import ClsDataPreprocessor
    from mmseg.models.data_preprocessor import SegDataPreProcessor
    return {
        'mmdet': DetDataPreprocessor(mean=MEAN, std=STD, bgr_to_rgb=True),
        'mmdet-bgr': DetDataPreprocessor(mean=[103.53, 116.28, 123.675], std=[1., 1., 1.],
                                         bgr_to_rgb=False),
        'mmseg': SegDataPreProcessor(mean=MEAN, std=STD, bgr_to_rgb=True),
        'mmpretrain': ClsDataPreprocessor(mean=MEAN, std=STD, to_rgb=True),
    }


@pytest.mark.parametrize('library', ['mmdet', 'mmdet-bgr', 'mmseg', 'mmpretrain'])
def test_normalizer_matches_the_library_preprocessor(library):
    preprocessor = preprocessors()[library]
    rgb = np.random.default_rng(0).integers(0, 256, size=(20, 28, 3), dtype=np.uint8)
    bgr = torch.from_numpy(rgb[..., ::-1].copy()).permute(2, 0, 1)  # how pipelines load images
    expected = preprocessor(dict(inputs=[bgr]), False)['inputs'][0]
    ours = Normalizer.from_data_preprocessor(preprocessor)(rgb)
    torch.testing.assert_close(ours, expected.float())


def test_images_from_files_and_folders(coco_mini, tmp_path):
    folder = f'{coco_mini}/images'
    found = list_images([folder, f'{folder}/000000000089.jpg'])
    assert len(found) == 7 and found[-1].endswith('000000000089.jpg')
    image = load_rgb(found[0], 100)
    assert image.dtype == np.uint8 and min(image.shape[:2]) == 100
    (tmp_path / 'notes.txt').write_text('x')
    with pytest.raises(FileNotFoundError, match='no image files'):
        list_images([str(tmp_path)])
