"""Where each preset's pretrained weights live today, and fetching them: ``focalnet://<preset>``.

The official links (``projects4jw.blob.core.windows.net``) answer 409 since 2023-05
(microsoft/FocalNet#43). :data:`WEIGHT_SOURCES` lists, per preset of ``ARCHS``, the places the same
weights can still be downloaded, best first: the official file on the GitHub release v1.0.0,
timm's converted safetensors on the Hugging Face hub, transformers' conversion. A short name
``focalnet://tiny_lrf`` resolves, in this order, to

1. a file in the offline folder (``weights_dir=`` or ``$FOCALNET_WEIGHTS_DIR``; no network),
2. a file already in the cache (``$FOCALNET_CACHE_DIR``, default ``~/.cache/focalnet-mm/weights``),
3. the first source that downloads (local rank 0 of every machine downloads, the others wait),

and says in one log line which file it used. The sha256 is checked where the table knows it; a
mismatch is refused. When every source fails, one line names each URL with its HTTP status and
how to pass a local file instead: never random weights.

Importing this module registers the ``focalnet://`` scheme with mmengine's ``CheckpointLoader``
(as mmengine does for ``torchvision://`` / ``open-mmlab://``), so mmengine's own
``load_checkpoint`` / ``Pretrained`` init read short names too (returned in the official layout).
"""
import hashlib
import os
import os.path as osp
import re
import urllib.error
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

from mmengine.logging import print_log
from mmengine.runner import CheckpointLoader

SCHEME = 'focalnet://'
OFFLINE_ENV = 'FOCALNET_WEIGHTS_DIR'
CACHE_ENV = 'FOCALNET_CACHE_DIR'
#: the installed command that fills an offline folder (focalnet_mm/weights/download.py)
DOWNLOAD_TOOL = 'focalnet-download-weights'
DEAD_HOST = 'projects4jw.blob.core.windows.net'


@dataclass(frozen=True)
class Source:
    """One downloadable copy of a preset's weights.

    ``format`` is the key layout (``official`` / ``timm`` / ``hf``), converted on load by
    ``formats.to_official``; ``sha256`` is None where no published digest is known.
    """
    url: str
    format: str
    sha256: Optional[str] = None


_RELEASE = 'https://github.com/microsoft/FocalNet/releases/download/v1.0.0/'
_HUB = 'https://huggingface.co/{}/resolve/main/{}'

#: the official file name of each preset (also accepted as is in an offline folder)
OFFICIAL_FILES: Dict[str, str] = {
    **{f'{size}_{rf}': f'focalnet_{size}_{rf}.pth'
       for size in ('tiny', 'small', 'base') for rf in ('srf', 'lrf')},
    'large_fl3': 'focalnet_large_lrf_384.pth', 'large_fl4': 'focalnet_large_lrf_384_fl4.pth',
    'xlarge_fl3': 'focalnet_xlarge_lrf_384.pth', 'xlarge_fl4': 'focalnet_xlarge_lrf_384_fl4.pth',
    'huge_fl3': 'focalnet_huge_lrf_224.pth', 'huge_fl4': 'focalnet_huge_lrf_224_fl4.pth',
    **{f'{size}_iso': f'focalnet_{size}_iso_16.pth' for size in ('tiny', 'small', 'base')},
}


def _release(preset):  # the official file on the GitHub release v1.0.0 of microsoft/FocalNet
    return Source(_RELEASE + OFFICIAL_FILES[preset], 'official')


def _timm(name):  # timm/<model>.<tag>: safetensors in timm key names
    return Source(_HUB.format(f'timm/{name}', 'model.safetensors'), 'timm')


def _hf(repo):  # transformers' conversion (microsoft/focalnet-*)
    return Source(_HUB.format(f'microsoft/{repo}', 'pytorch_model.bin'), 'hf')


#: preset -> sources, best first. No published sha256 is known for any of these files (neither
#: the release nor the hub pages we could check list one), so every ``sha256`` is None: add one
#: here once known and it is checked on every fetch.
WEIGHT_SOURCES: Dict[str, Tuple[Source, ...]] = {
    'tiny_srf': (_release('tiny_srf'), _timm('focalnet_tiny_srf.ms_in1k'), _hf('focalnet-tiny')),
    'tiny_lrf': (_release('tiny_lrf'), _timm('focalnet_tiny_lrf.ms_in1k'),
                 _hf('focalnet-tiny-lrf')),
    'small_srf': (_release('small_srf'), _timm('focalnet_small_srf.ms_in1k'),
                  _hf('focalnet-small')),
    'small_lrf': (_release('small_lrf'), _timm('focalnet_small_lrf.ms_in1k'),
                  _hf('focalnet-small-lrf')),
    'base_srf': (_release('base_srf'), _timm('focalnet_base_srf.ms_in1k'), _hf('focalnet-base')),
    'base_lrf': (_release('base_lrf'), _timm('focalnet_base_lrf.ms_in1k'),
                 _hf('focalnet-base-lrf')),
    'large_fl3': (_release('large_fl3'), _timm('focalnet_large_fl3.ms_in22k'),
                  _hf('focalnet-large-lrf-fl3')),
    'large_fl4': (_release('large_fl4'), _timm('focalnet_large_fl4.ms_in22k'),
                  _hf('focalnet-large-lrf-fl4')),
    'xlarge_fl3': (_release('xlarge_fl3'), _timm('focalnet_xlarge_fl3.ms_in22k'),
                   _hf('focalnet-xlarge-lrf-fl3')),
    'xlarge_fl4': (_release('xlarge_fl4'), _timm('focalnet_xlarge_fl4.ms_in22k'),
                   _hf('focalnet-xlarge-lrf-fl4')),
    # huge is not on the release; timm's copies only (its fl4 file has no classification head)
    'huge_fl3': (_timm('focalnet_huge_fl3.ms_in22k'), ),
    'huge_fl4': (_timm('focalnet_huge_fl4.ms_in22k'), ),
    # isotropic models: only ever on the dead storage, converted by nobody
    'tiny_iso': (),
    'small_iso': (),
    'base_iso': (),
}

#: why a preset has no source (shown instead of a download attempt)
UNOBTAINABLE: Dict[str, str] = {
    name: (f'the official {OFFICIAL_FILES[name]} was only on {DEAD_HOST}, which refuses public '
           'access (microsoft/FocalNet#43, #51), and neither timm nor transformers converted it')
    for name in ('tiny_iso', 'small_iso', 'base_iso')
}


class WeightsUnavailableError(RuntimeError):
    """No source of a short name could be fetched; the message says how to pass a file."""


class WeightsHashError(RuntimeError):
    """A file's sha256 differs from the one the table records; the file was refused."""


# --------------------------------------------------------------------------- names & folders
def is_short_name(name) -> bool:
    return isinstance(name, str) and name.startswith(SCHEME)


def parse_short_name(name: str) -> str:
    """``focalnet://tiny_lrf`` -> ``tiny_lrf``; an unknown preset is a one-line error."""
    preset = name[len(SCHEME):] if is_short_name(name) else name
    if preset not in WEIGHT_SOURCES:
        raise ValueError(f'Unknown FocalNet weights {name!r}; use focalnet://<preset> with one of '
                         f'{sorted(WEIGHT_SOURCES)}, or a file path / URL.')
    return preset


def cache_root(cache_dir: Optional[str] = None) -> str:
    """``cache_dir``, else ``$FOCALNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/focalnet-mm/weights``."""
    if cache_dir:
        return cache_dir
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    xdg = os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache')
    return osp.join(xdg, 'focalnet-mm', 'weights')


def file_name(url: str) -> str:
    """A file name unique per URL: host and path with ``/`` -> ``--`` (every hub file is called
    ``model.safetensors``; its repo is in the name). The extension stays last."""
    url = url.split('?')[0].split('#')[0]
    rest = url.split('://', 1)[-1]
    return re.sub(r'[^A-Za-z0-9._-]', '_', rest.replace('/', '--'))


def relative_path(preset: str, source: Source) -> str:
    """Where a source's file lives inside the cache and inside an offline folder."""
    return osp.join(preset, file_name(source.url))


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _check_hash(path: str, source: Source, name: str, remove: bool):
    if source.sha256 is None:
        return
    actual = sha256_of(path)
    if actual != source.sha256.lower():
        if remove:
            os.remove(path)
        raise WeightsHashError(
            f'{name}: refused {path} (from {source.url}): sha256 {actual} != expected '
            f'{source.sha256}{" (file removed)" if remove else ""}; fetch it again or pass a '
            'trusted local file as checkpoint=/path/to/file.')


def _offline_files(preset: str, sources: Sequence[Source], folder: str):
    """(path, source) candidates: the tool's layout ``<folder>/<preset>/<name>`` per source, then
    the official file under its upstream name (``<folder>/focalnet_tiny_srf.pth``)."""
    for source in sources:
        yield osp.join(folder, relative_path(preset, source)), source
    if preset in OFFICIAL_FILES:
        yield osp.join(folder, OFFICIAL_FILES[preset]), Source(
            f'official file {OFFICIAL_FILES[preset]}', 'official')


def _cache_files(preset: str, sources: Sequence[Source], root: str):
    for source in sources:
        yield osp.join(root, relative_path(preset, source)), source


def _find_local(preset, sources, offline_dirs, root):
    """(path, source, 'offline' | 'cached') of the first local copy, or None; no network."""
    for folder in offline_dirs:
        for path, source in _offline_files(preset, sources, folder):
            if osp.isfile(path):
                return path, source, 'offline'
    for path, source in _cache_files(preset, sources, root):
        if osp.isfile(path):
            return path, source, 'cached'
    return None


# --------------------------------------------------------------------------- fetching
def _describe_error(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f'HTTP {error.code} {error.reason}'
    if isinstance(error, urllib.error.URLError):
        return f'{error.reason}'
    return f'{type(error).__name__}: {error}'


def download(source: Source, path: str, progress: bool = True) -> str:
    """Download ``source`` to ``path`` atomically (torch.hub's downloader); verify its sha256."""
    from torch.hub import download_url_to_file
    created = _make_dirs(osp.dirname(path))
    try:
        download_url_to_file(source.url, path, progress=progress)  # temp file, then moved
        _check_hash(path, source, source.url, remove=True)
    except BaseException:
        for folder in created:  # a failed download leaves no empty folders behind
            if osp.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        raise
    return path


def _make_dirs(folder: str) -> list:
    """``os.makedirs(folder)``; returns the folders it created, deepest first."""
    created = []
    while folder and not osp.isdir(folder):
        created.append(folder)
        folder = osp.dirname(folder)
    for path in reversed(created):
        os.makedirs(path, exist_ok=True)
    return created


def _try_sources(preset, sources, root, progress) -> Tuple[Optional[str], Optional[Source], list]:
    attempts = []
    for path, source in _cache_files(preset, sources, root):
        try:
            return download(source, path, progress), source, attempts
        except WeightsHashError:
            raise
        except Exception as e:  # noqa: BLE001  (HTTP, network, disk: recorded and reported)
            attempts.append((source.url, _describe_error(e)))
    return None, None, attempts


def _failure_line(name, preset, attempts, offline_dirs) -> str:
    tried = '; '.join(f'{url} ({why})' for url, why in attempts)
    offline = ', '.join(offline_dirs) if offline_dirs else f'none (set ${OFFLINE_ENV})'
    return (f'{name}: no source could be fetched: {tried}. Offline folders searched: {offline}. '
            f'On a machine with internet run `{DOWNLOAD_TOOL} {preset} --dir DIR` and set '
            f'{OFFLINE_ENV}=DIR, or download a file yourself and pass its path as '
            'checkpoint=/path/to/file (init_cfg Pretrained / pretrained= / --weights).')


def fetch_weights(name: str, weights_dir: Optional[str] = None, cache_dir: Optional[str] = None,
                  sources: Optional[Sequence[Source]] = None, progress: bool = True,
                  logger='current', search_env: bool = True) -> str:
    """The local path of the weights of ``focalnet://<preset>`` (or a bare preset name).

    Args:
        name: ``focalnet://<preset>``.
        weights_dir: offline folder of pre-fetched files (default ``$FOCALNET_WEIGHTS_DIR``);
            searched before the cache and before any network access.
        cache_dir: download cache (default :func:`cache_root`).
        sources: override the table's sources (tests, mirrors).
        progress: show a download progress bar.
        search_env: also search ``$FOCALNET_WEIGHTS_DIR``.
    """
    from mmengine.dist import barrier, get_dist_info, get_local_rank

    preset = parse_short_name(name)
    name = SCHEME + preset
    sources = tuple(WEIGHT_SOURCES[preset] if sources is None else sources)
    offline_dirs = [d for d in (weights_dir, os.environ.get(OFFLINE_ENV) if search_env else None)
                    if d]
    root = cache_root(cache_dir)
    found = _find_local(preset, sources, offline_dirs, root)  # 1. offline folder, 2. cache

    # 3. network: local rank 0 of each machine downloads while every other rank waits. Every rank
    # passes exactly one barrier, whatever it found, so no rank can wait for a barrier in vain.
    _, world_size = get_dist_info()
    attempts, error, downloaded = [], None, (None, None)
    if found is None and sources and get_local_rank() == 0:
        try:
            *downloaded, attempts = _try_sources(preset, sources, root, progress)
        except WeightsHashError as e:  # raised after the barrier
            error = e
    if world_size > 1:
        barrier()
    if error is not None:
        raise error
    if found is not None:
        path, source, where = found
        _check_hash(path, source, name, remove=where == 'cached')
        print_log(f'{name}: using {where} file {path} ({source.format} layout, from '
                  f'{source.url})', logger=logger)
        return path
    if not sources:
        raise WeightsUnavailableError(
            f'{name}: no downloadable copy exists: {UNOBTAINABLE.get(preset, "none listed")}. '
            'If you have the file, pass its path as checkpoint=/path/to/file or put it in '
            f'${OFFLINE_ENV} as {OFFICIAL_FILES.get(preset, preset)}.')
    path, source = downloaded
    if path is None:  # the other ranks read what local rank 0 downloaded
        path, source = next(((p, s) for p, s in _cache_files(preset, sources, root)
                             if osp.isfile(p)), (None, None))
    if path is None:
        if not attempts:
            attempts = [(s.url, 'not downloaded by local rank 0; see its log') for s in sources]
        raise WeightsUnavailableError(_failure_line(name, preset, attempts, offline_dirs))
    failed = '; '.join(f'{u} ({w})' for u, w in attempts)
    print_log(f'{name}: using {source.url} ({source.format} layout) -> {path}'
              + (f' after {len(attempts)} failed: {failed}' if attempts else ''), logger=logger)
    return path


def download_all(names: Sequence[str], folder: str, progress: bool = True, logger='current'):
    """Fetch the best source of each name into ``folder`` (the offline-folder layout)."""
    return {SCHEME + parse_short_name(n): fetch_weights(n, weights_dir=folder, cache_dir=folder,
                                                        progress=progress, logger=logger,
                                                        search_env=False)
            for n in names}


# --------------------------------------------------------------------------- mmengine scheme
@CheckpointLoader.register_scheme(prefixes=SCHEME)
def load_from_focalnet(filename, map_location=None, logger=None):
    """mmengine loader for ``focalnet://<preset>``: a flat state dict in the official layout."""
    from .formats import convert_checkpoint
    from .io import read_checkpoint
    checkpoint = read_checkpoint(fetch_weights(filename), map_location=map_location or 'cpu')
    return dict(convert_checkpoint(checkpoint).state_dict)
