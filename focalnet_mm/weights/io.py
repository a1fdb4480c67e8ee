"""Reading checkpoint files safely (torch weights_only / safetensors): local, URL or
``focalnet://<preset>``.

Importing this module registers the ``focalnet://`` scheme with mmengine's ``CheckpointLoader``
(as mmengine does for ``torchvision://`` / ``open-mmlab://``), so mmengine's own
``load_checkpoint`` / ``Pretrained`` init read short names too (returned in the official layout).
"""
import argparse
import json
import os
import os.path as osp
import pickle
import re
from typing import Optional

import torch
from mmengine.runner import CheckpointLoader

from .download import HF_WEIGHT_FILES, download_checkpoint
from .formats import convert_checkpoint
from .sources import SCHEME, fetch_weights, is_short_name

CONVERTER = 'tools/model_converters/focalnet2mm.py'


class UnsafeCheckpointError(ValueError):
    """The file needs arbitrary pickled objects to load; nothing from it was executed."""


# --------------------------------------------------------------------------- reading
def is_url(path) -> bool:
    return isinstance(path, str) and path.startswith(('http://', 'https://'))


def local_checkpoint_file(path, weights_dir: Optional[str] = None) -> str:
    """A local file for ``path``: ``focalnet://<preset>`` and URLs are fetched (cached) first."""
    path = str(path)
    if is_short_name(path):
        path = fetch_weights(path, weights_dir=weights_dir)
    elif is_url(path):
        path = download_checkpoint(path)
    return resolve_checkpoint_file(path)


def resolve_checkpoint_file(path: str) -> str:
    """A file path for ``path`` (an HF model folder resolves to its weights file)."""
    if osp.isdir(path):
        for name in HF_WEIGHT_FILES:
            if osp.isfile(osp.join(path, name)):
                return osp.join(path, name)
        raise FileNotFoundError(f'{path} is a folder without {" or ".join(HF_WEIGHT_FILES)}; '
                                'point the checkpoint at the weights file itself.')
    if not osp.isfile(path):
        if '://' in path:  # open-mmlab://, torchvision://: other backbones' model zoos
            raise FileNotFoundError(
                f'FocalNet cannot load {path!r}: it names another backbone\'s weights, usually '
                'inherited from a base config (mmseg bases set model.pretrained); set '
                "model.pretrained=None, and for ImageNet weights model.backbone.init_cfg=dict("
                "type='Pretrained', checkpoint='focalnet://<arch>').")
        raise FileNotFoundError(f'FocalNet checkpoint {path!r} not found; check the path in '
                                'init_cfg=dict(type="Pretrained", checkpoint=...) / pretrained=.')
    return path


def read_checkpoint(path, map_location='cpu', weights_dir: Optional[str] = None):
    """Read a checkpoint without running any code from it.

    ``.safetensors`` files hold tensors only. Everything else goes through
    ``torch.load(weights_only=True)``, which accepts tensors, containers, the types mmengine
    writes (see ``focalnet_mm.compat``) and ``argparse.Namespace`` (DETR/DINO ``args``). A file
    that needs any other pickled object is refused with :class:`UnsafeCheckpointError`.
    ``focalnet://<preset>`` short names resolve through ``sources.fetch_weights`` (offline
    folder ``weights_dir`` / ``$FOCALNET_WEIGHTS_DIR``, cache, then the sources in order).
    """
    path = local_checkpoint_file(path, weights_dir)
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        device = map_location if isinstance(map_location, str) else 'cpu'
        return load_file(path, device=device)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'GLOBAL ([\w.]+)', str(e)) or re.search(r"got <class '([\w.]+)'>", str(e))
        what = found.group(1) if found else 'a non-tensor Python object'
        raise UnsafeCheckpointError(
            f'Refused to load {path}: it needs the pickled object {what}, and unpickling arbitrary '
            'objects can run code, so only tensors and plain containers are read. If you trust the '
            f'file, rewrite it as plain tensors with: python {CONVERTER} {path} OUT.pth '
            '--trust-pickle') from None
    except EOFError:  # an empty file
        raise ValueError(f'{path} is empty ({osp.getsize(path)} bytes), not a checkpoint; '
                         'download or copy it again.') from None
    except RuntimeError as e:  # torch's zip reader on a truncated or non-checkpoint file
        if 'zip archive' not in str(e) and 'PytorchStreamReader' not in str(e):
            raise
        raise ValueError(f'{path} is not a readable checkpoint (truncated, or not written by '
                         f'torch.save: {str(e).split(".")[0]}); download or copy it again.') from None


def read_sidecar_config(path) -> Optional[dict]:
    """The HF transformers ``config.json`` next to (or inside) ``path``, if it is a FocalNet one."""
    if not isinstance(path, (str, os.PathLike)) or is_url(str(path)) or is_short_name(str(path)):
        return None
    path = str(path)
    folder = path if osp.isdir(path) else osp.dirname(path)
    config_file = osp.join(folder, 'config.json')
    if not osp.isfile(config_file):
        return None
    try:
        with open(config_file) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and config.get('model_type') == 'focalnet' else None


@CheckpointLoader.register_scheme(prefixes=SCHEME)
def load_from_focalnet(filename, map_location=None, logger=None):
    """mmengine loader for ``focalnet://<preset>``: a flat state dict in the official layout."""
    checkpoint = read_checkpoint(fetch_weights(filename), map_location=map_location or 'cpu')
    return dict(convert_checkpoint(checkpoint).state_dict)
