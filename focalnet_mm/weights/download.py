"""Downloading checkpoint files: whole or not at all, local rank 0 of each machine first.

One path for ``focalnet://`` sources (``sources.py``) and plain URLs (``io.py``): mmengine's file
I/O reads the body (``mmengine.fileio.get``: urllib, redirects followed). It reads the body in one
call, so Python's ``http.client`` raises ``IncompleteRead`` when fewer bytes arrive than the
Content-Length announced; torch.hub's ``download_url_to_file`` reads in chunks, which accepts a
cut body silently and would cache it. The bytes are kept only when they are a whole checkpoint
(:func:`integrity.checkpoint_problem`: never an HTML page served with status 200), written to a
temporary file in the target folder and renamed, so the target is whole or absent.
"""
import http.client
import os
import os.path as osp
import re
import urllib.error
import uuid
from typing import Callable, Optional, TypeVar

from .integrity import checkpoint_problem, sha256_of

#: weights files of a Hugging Face model repository (every repository names its file the same)
HF_WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')

T = TypeVar('T')


class DownloadError(RuntimeError):
    """The server answered, but not with a whole checkpoint file; nothing was kept."""


class WeightsHashError(RuntimeError):
    """A file's sha256 differs from the one recorded for it; the file was refused."""


def local_rank(rank: int) -> int:
    """This process' rank on its machine: ``LOCAL_RANK`` as torchrun and mmengine's slurm launcher
    set it (mmengine's ``get_local_rank`` needs a local process group that nothing creates),
    else the global rank (one machine)."""
    return int(os.environ.get('LOCAL_RANK', rank))


def local_rank_zero_first(work: Callable[[], T]) -> Optional[T]:
    """Run ``work`` on local rank 0 of each machine while the other ranks wait; its result there,
    None on the other ranks (which then look at what it left on disk).

    Every rank passes exactly one barrier whatever ``work`` did, and an error of ``work`` is
    raised only after it, so no rank waits for a barrier in vain.
    """
    from mmengine.dist import barrier, get_dist_info
    rank, world_size = get_dist_info()
    result, error = None, None
    if local_rank(rank) == 0:
        try:
            result = work()
        except Exception as e:  # noqa: BLE001  (raised below, after the barrier)
            error = e
    if world_size > 1:
        barrier()
    if error is not None:
        raise error
    return result


def file_name(url: str) -> str:
    """A file name unique per URL: host and path with ``/`` -> ``--`` (every hub file is called
    ``model.safetensors``; its repo is in the name). The extension stays last."""
    url = url.split('?')[0].split('#')[0]
    rest = url.split('://', 1)[-1]
    return re.sub(r'[^A-Za-z0-9._-]', '_', rest.replace('/', '--'))


def describe_error(error: Exception) -> str:
    """A short reason on one line (it goes into a one-line error)."""
    if isinstance(error, urllib.error.HTTPError):
        text = f'HTTP {error.code} {error.reason}'
    elif isinstance(error, urllib.error.URLError):
        text = f'{error.reason}'
    else:
        text = f'{type(error).__name__}: {error}'
    return ' '.join(text.split())


def download_file(url: str, path: str) -> str:
    """Download ``url`` to ``path`` if the body is a whole checkpoint file; returns ``path``.

    Raises DownloadError, leaving nothing at ``path``, for a body cut short of its Content-Length
    or bytes that are not a whole checkpoint (an HTML page, a cut zip or safetensors file);
    urllib's errors (HTTP status, connection) as they are.
    """
    from mmengine import fileio
    try:
        body = fileio.get(url)
    except http.client.IncompleteRead as e:
        received = len(e.partial)
        raise DownloadError(f'body cut short: {received} of the {received + e.expected} bytes of '
                            'its Content-Length arrived') from None
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.{uuid.uuid4().hex}.part')
    try:
        with open(tmp, 'xb') as f:
            f.write(body)
        del body
        problem = checkpoint_problem(tmp)
        if problem is not None:
            raise DownloadError(f'answered {problem}')
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return path


def download_checkpoint(url: str, model_dir: Optional[str] = None) -> str:
    """Download ``url`` once into torch.hub's checkpoint cache (local rank 0 first); the path.

    A sha256 prefix in the file name (OpenMMLab ``name-<8 hex>.pth``) is verified, as torch.hub
    does. Hub files with a generic name (``model.safetensors``) are cached under a name derived
    from the whole URL. The file is read afterwards by the same safe reader as a local file.
    """
    from torch.hub import HASH_REGEX, get_dir

    model_dir = model_dir or osp.join(get_dir(), 'checkpoints')
    filename = osp.basename(url.split('?')[0])
    path = osp.join(model_dir, file_name(url) if filename in HF_WEIGHT_FILES else filename)

    def fetch():
        if osp.exists(path):
            return
        download_file(url, path)
        match = HASH_REGEX.search(filename)
        actual = sha256_of(path)
        if match and not actual.startswith(match.group(1)):
            os.remove(path)
            raise WeightsHashError(
                f'{url}: sha256 {actual} does not start with {match.group(1)} (the prefix in '
                'its name); the file was removed. Fetch it again or pass a trusted local file.')

    local_rank_zero_first(fetch)
    return path
