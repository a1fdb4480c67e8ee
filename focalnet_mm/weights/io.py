"""Reading checkpoint files safely (torch weights_only / safetensors), local or URL."""
import argparse
import json
import os
import os.path as osp
import pickle
import re
from typing import Optional

import torch

from .sources import (
    WeightsHashError,
    download_file,
    fetch_weights,
    file_name,
    is_short_name,
    local_rank,
    sha256_of,
)

HF_WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')
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


def download_checkpoint(url: str, model_dir: Optional[str] = None) -> str:
    """Download ``url`` once into torch.hub's checkpoint cache (local rank 0 first); the path.

    The same downloader as ``focalnet://`` names (:func:`sources.download_file`: whole files
    only, never an HTML page). The file is read afterwards by the same safe reader as a local
    file. A sha256 prefix in the file name (OpenMMLab ``name-<8 hex>.pth``) is verified, as
    torch.hub does. Hub files with a generic name (``model.safetensors``) are cached under a name
    derived from the whole URL.
    """
    from mmengine.dist import barrier, get_dist_info
    from torch.hub import HASH_REGEX, get_dir

    model_dir = model_dir or osp.join(get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    filename = osp.basename(url.split('?')[0])
    path = osp.join(model_dir, file_name(url) if filename in HF_WEIGHT_FILES else filename)
    rank, world_size = get_dist_info()
    error = None
    if local_rank(rank) == 0 and not osp.exists(path):
        try:
            download_file(url, path)
            match = HASH_REGEX.search(filename)
            actual = sha256_of(path)
            if match and not actual.startswith(match.group(1)):
                os.remove(path)
                raise WeightsHashError(
                    f'{url}: sha256 {actual} does not start with {match.group(1)} (the prefix in '
                    'its name); the file was removed. Fetch it again or pass a trusted local file.')
        except Exception as e:  # noqa: BLE001  (raised after the barrier: no rank waits in vain)
            error = e
    if world_size > 1:
        barrier()
    if error is not None:
        raise error
    return path


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
