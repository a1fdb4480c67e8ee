"""Where each preset's pretrained weights live today, and fetching them: ``focalnet://<preset>``.

The official links (``projects4jw.blob.core.windows.net``) answer 409 since 2023-05
(microsoft/FocalNet#43). :data:`WEIGHT_SOURCES` lists, per preset of ``ARCHS``, the places the same
weights can still be downloaded, best first: the official file on the GitHub release v1.0.0,
timm's converted safetensors on the Hugging Face hub, transformers' conversion. A short name
``focalnet://tiny_lrf`` resolves, in this order, to

1. a file in the offline folder (``weights_dir=`` or ``$FOCALNET_WEIGHTS_DIR``; no network),
2. a file already in the cache (``$FOCALNET_CACHE_DIR``, default ``~/.cache/focalnet-mm/weights``),
3. the first source that downloads (local rank 0 of every machine downloads, the others wait),

and says in one log line which file it used. A download is kept only when it is whole and looks
like a checkpoint (its Content-Length arrived; a torch zip / pickle or a complete safetensors
file, never an HTML page), and the sha256 is checked where the table knows it; a mismatch is
refused. A cached file that fails these checks (cut by an older downloader, replaced, edited) is
removed and downloaded again. When every source fails, one line names each URL with its HTTP
status or what was wrong with the answer, and how to pass a local file instead: never random
weights.

Importing this module registers the ``focalnet://`` scheme with mmengine's ``CheckpointLoader``
(as mmengine does for ``torchvision://`` / ``open-mmlab://``), so mmengine's own
``load_checkpoint`` / ``Pretrained`` init read short names too (returned in the official layout).
"""
import hashlib
import json
import logging
import os
import os.path as osp
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
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


class DownloadError(RuntimeError):
    """The server answered, but not with a whole checkpoint file; nothing was kept."""


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
    """A short reason on one line (it goes into a one-line error)."""
    if isinstance(error, urllib.error.HTTPError):
        text = f'HTTP {error.code} {error.reason}'
    elif isinstance(error, urllib.error.URLError):
        text = f'{error.reason}'
    else:
        text = f'{type(error).__name__}: {error}'
    return ' '.join(text.split())


def file_problem(path: str) -> Optional[str]:
    """Why ``path`` is not a whole checkpoint file (a short reason), or None.

    From the bytes alone, without unpickling: a torch zip needs its central directory (at the
    end, so a cut file has none); a safetensors file must be as long as its header says; a
    legacy torch pickle starts with the pickle protocol byte (its length is not recorded).
    """
    size = osp.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(8)
        if head.startswith(b'PK'):
            try:
                zipfile.ZipFile(f).close()
                return None
            except zipfile.BadZipFile:
                return f'cut short or damaged: a zip archive without its end ({size} bytes)'
        if head[:1] == b'\x80':
            return None
        if len(head) == 8 and 0 < int.from_bytes(head, 'little') < min(size, 1 << 27):
            header = f.read(int.from_bytes(head, 'little'))
            try:
                tensors = json.loads(header)
                end = max([0] + [t['data_offsets'][1] for k, t in tensors.items()
                                 if k != '__metadata__'])
            except (ValueError, KeyError, TypeError, IndexError):
                pass  # not a safetensors header
            else:
                expected = 8 + len(header) + end
                return None if size == expected else (
                    f'cut short or damaged: {size} of the {expected} bytes its safetensors header '
                    'declares')
    start = head.lstrip()[:1]
    what = 'an HTML page' if start == b'<' else f'a file that starts with {head!r}'
    return f'{what}, not a checkpoint (torch zip / pickle or safetensors)'


def download_file(url: str, path: str, progress: bool = True) -> str:
    """Download ``url`` to ``path`` (redirects followed); returns ``path``.

    The body goes to a temporary file in the same folder and is renamed to ``path`` only when it
    is whole: as long as the Content-Length the server announced, and a checkpoint by
    :func:`file_problem` (an HTML page served with 200, a connection cut early, raise
    DownloadError and leave nothing at ``path``). urllib / torch.hub accept a short body silently.
    """
    from tqdm import tqdm
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    request = urllib.request.Request(url, headers={'User-Agent': 'focalnet-mm'})
    with tempfile.NamedTemporaryFile(dir=folder, prefix=f'.{osp.basename(path)}.',
                                     suffix='.part', delete=False) as tmp:
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                kind = response.headers.get_content_type()
                if kind == 'text/html':
                    raise DownloadError(f'answered {response.status} with an HTML page ({kind}), '
                                        'not a checkpoint')
                length = response.headers.get('Content-Length')
                expected = int(length) if length and length.isdigit() else None
                received = 0
                with tqdm(total=expected, unit='B', unit_scale=True, unit_divisor=1024,
                          disable=not progress, desc=osp.basename(path)) as bar:
                    for block in iter(lambda: response.read(1 << 20), b''):
                        tmp.write(block)
                        received += len(block)
                        bar.update(len(block))
            if expected is not None and received != expected:
                raise DownloadError(f'body cut short: {received} of the {expected} bytes of its '
                                    'Content-Length arrived')
            tmp.flush()
            problem = file_problem(tmp.name)
            if problem is not None:
                raise DownloadError(f'answered {problem}')
            tmp.close()
            os.replace(tmp.name, path)
        finally:
            if osp.exists(tmp.name):
                os.remove(tmp.name)
    return path


def download(source: Source, path: str, progress: bool = True) -> str:
    """Download ``source`` to ``path`` (:func:`download_file`); verify its sha256. A failed
    download leaves no empty folders behind."""
    created = _make_dirs(osp.dirname(path))
    try:
        download_file(source.url, path, progress=progress)
        _check_hash(path, source, source.url, remove=True)
    except BaseException:
        for folder in created:
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


def _cache_problem(path: str, source: Source) -> Optional[str]:
    """Why a cached file must be fetched again (its recorded sha256, then its bytes), or None."""
    if source.sha256 is not None:
        actual = sha256_of(path)
        if actual != source.sha256.lower():
            return f'sha256 {actual} != expected {source.sha256}'
    return file_problem(path)


def local_rank(rank: int) -> int:
    """This process' rank on its machine: ``LOCAL_RANK`` as torchrun and mmengine's slurm launcher
    set it (mmengine's ``get_local_rank`` needs a local process group that nothing creates),
    else the global rank (one machine)."""
    return int(os.environ.get('LOCAL_RANK', rank))


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
    from mmengine.dist import barrier, get_dist_info

    preset = parse_short_name(name)
    name = SCHEME + preset
    sources = tuple(WEIGHT_SOURCES[preset] if sources is None else sources)
    offline_dirs = [d for d in (weights_dir, os.environ.get(OFFLINE_ENV) if search_env else None)
                    if d]
    root = cache_root(cache_dir)

    # Local rank 0 of each machine checks the cache and downloads while every other rank waits,
    # then looks at what it left. Every rank passes exactly one barrier, whatever it found, so no
    # rank can wait for a barrier in vain.
    rank, world_size = get_dist_info()
    first = local_rank(rank) == 0
    attempts, error, found = [], None, None
    if first:
        found = _find_local(preset, sources, offline_dirs, root)  # 1. offline folder, 2. cache
        if found is not None and found[2] == 'cached':
            problem = _cache_problem(found[0], found[1])
            if problem is not None:
                os.remove(found[0])
                print_log(f'{name}: removed the cached {found[0]} ({problem}); downloading it again',
                          logger=logger, level=logging.WARNING)
                found = None
        if found is None and sources:  # 3. network
            try:
                path, source, attempts = _try_sources(preset, sources, root, progress)
                if path is not None:
                    found = path, source, 'downloaded'
            except WeightsHashError as e:  # raised after the barrier
                error = e
    if world_size > 1:
        barrier()
    if error is not None:
        raise error
    if not first:
        found = _find_local(preset, sources, offline_dirs, root)
    if found is not None:
        path, source, where = found
        if where == 'offline':
            _check_hash(path, source, name, remove=False)
        failed = '; '.join(f'{u} ({w})' for u, w in attempts)
        print_log(f'{name}: using {where} file {path} ({source.format} layout, from {source.url})'
                  + (f' after {len(attempts)} failed: {failed}' if attempts else ''), logger=logger)
        return path
    if not sources:
        raise WeightsUnavailableError(
            f'{name}: no downloadable copy exists: {UNOBTAINABLE.get(preset, "none listed")}. '
            'If you have the file, pass its path as checkpoint=/path/to/file or put it in '
            f'${OFFLINE_ENV} as {OFFICIAL_FILES.get(preset, preset)}.')
    if not attempts:
        attempts = [(s.url, 'not downloaded by local rank 0; see its log') for s in sources]
    raise WeightsUnavailableError(_failure_line(name, preset, attempts, offline_dirs))


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
