"""Images in, normalized tensors out, the way the model's data preprocessor would see them."""
import os
import os.path as osp
from typing import List, Optional, Sequence

import mmcv
import numpy as np
import torch

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def list_images(paths: Sequence[str]) -> List[str]:
    """Image files among ``paths``; folders contribute their images (sorted, not recursive)."""
    found = []
    for path in paths:
        if osp.isdir(path):
            found += sorted(osp.join(path, name) for name in os.listdir(path)
                            if name.lower().endswith(IMAGE_EXTENSIONS))
        elif osp.isfile(path):
            found.append(path)
        else:
            raise FileNotFoundError(f'{path} is neither a file nor a folder.')
    if not found:
        raise FileNotFoundError(f'no image files ({", ".join(IMAGE_EXTENSIONS)}) in '
                                f'{", ".join(paths)}.')
    return found


def load_rgb(path: str, short_side: Optional[int] = None) -> np.ndarray:
    """RGB uint8 (H, W, 3); resized (aspect kept) so the short side is ``short_side`` if given."""
    image = mmcv.imread(path, channel_order='rgb')
    if image is None:
        raise ValueError(f'{path} could not be read as an image; pass image files '
                         f'({", ".join(IMAGE_EXTENSIONS)}).')
    if short_side:
        height, width = image.shape[:2]
        scale = short_side / min(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = mmcv.imresize(image, size, interpolation='bilinear')
    return image


def _as_column(values: Optional[Sequence[float]]) -> Optional[torch.Tensor]:
    return None if values is None else torch.as_tensor(values, dtype=torch.float32).view(-1, 1, 1)


def _as_list(values) -> Optional[List[float]]:
    return None if values is None else torch.as_tensor(values).flatten().tolist()


class Normalizer:
    """``(x - mean) / std`` in the channel order the model was trained with.

    OpenMMLab pipelines load images BGR; the data preprocessor converts to RGB when its
    ``bgr_to_rgb``/``to_rgb`` flag is set, and its mean/std are in the converted order.
    """

    def __init__(self, mean: Optional[Sequence[float]], std: Optional[Sequence[float]],
                 to_rgb: bool):
        self.mean, self.std = _as_column(mean), _as_column(std)
        self.to_rgb = to_rgb

    @classmethod
    def from_data_preprocessor(cls, preprocessor) -> 'Normalizer':
        mean = getattr(preprocessor, 'mean', None)
        std = getattr(preprocessor, 'std', None)
        if not getattr(preprocessor, '_enable_normalize', mean is not None):
            mean = std = None
        to_rgb = any(bool(getattr(preprocessor, name, False))
                     for name in ('_channel_conversion', 'channel_conversion', 'to_rgb'))
        return cls(_as_list(mean), _as_list(std), to_rgb)

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        image = rgb if self.to_rgb else rgb[..., ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        if self.mean is not None:
            tensor = (tensor - self.mean) / self.std
        return tensor
