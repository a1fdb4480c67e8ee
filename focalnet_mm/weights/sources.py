"""Where each preset's pretrained weights live today, and fetching them: ``focalnet://<preset>``.

The official links (``projects4jw.blob.core.windows.net``) answer 409 since 2023-05
(microsoft/FocalNet#43). :data:`WEIGHT_SOURCES` lists, per preset of ``ARCHS``, the places the same
weights can still be downloaded, best first: the official file on the GitHub release v1.0.0,
timm's converted safetensors on the Hugging Face hub, transformers' conversion. A short name
``focalnet://tiny_lrf`` resolves, in this order, to

1. a file in the offline folder (``weights_dir=`` or ``$FOCALNET_WEIGHTS_DIR``; no network),
2. a file already in the cache (``$FOCALNET_CACHE_DIR``, default ``~/.cache/focalnet-mm/weights``),
3. the first source that downloads (local rank 0 of every machine downloads, the others wait),

and says in one log line which file it used. A download is kept only when it is whole
(``download.py``: its Content-Length arrived, a whole torch zip / pickle or safetensors file,
never an HTML page), and the sha256 is checked where the table knows it; a mismatch is refused.
A cached file that fails these checks (cut by an older downloader, replaced, edited) is removed
and downloaded again. When every source fails, one line names each URL with its HTTP status or
what was wrong with the answer, how to fill an offline folder or pass a local file, and how to
train without pretrained weights: never random weights by accident.
"""
import logging
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

from mmengine.logging import print_log

from .download import (
    WeightsHashError,
    describe_error,
    download_file,
    file_name,
    local_rank_zero_first,
)
from .integrity import checkpoint_problem, sha256_of

SCHEME = 'focalnet://'
OFFLINE_ENV = 'FOCALNET_WEIGHTS_DIR'
CACHE_ENV = 'FOCALNET_CACHE_DIR'
#: the installed command that fills an offline folder (tools/download_weights.py)
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


#: the way past missing weights that needs no file, in every WeightsUnavailableError (so also in
#: the traceback of mmdet's / mmseg's own tools/train.py, where no tool of ours adds a word)
TRAIN_WITHOUT_WEIGHTS = ('To train without pretrained weights instead: pretrained = None in the '
                         'custom templates, otherwise --cfg-options model.backbone.init_cfg=None')


class WeightsUnavailableError(RuntimeError):
    """No copy of a short name's weights was found or could be fetched; the one-line message
    names how to fill an offline folder, how to pass a file, and how to train without them."""


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


def relative_path(preset: str, source: Source) -> str:
    """Where a source's file lives inside the cache and inside an offline folder."""
    return osp.join(preset, file_name(source.url))


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
            f'trusted local file as checkpoint=/path/to/file. {TRAIN_WITHOUT_WEIGHTS}')


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
def _make_dirs(folder: str) -> list:
    """``os.makedirs(folder)``; returns the folders it created, deepest first."""
    created = []
    while folder and not osp.isdir(folder):
        created.append(folder)
        folder = osp.dirname(folder)
    for path in reversed(created):
        os.makedirs(path, exist_ok=True)
    return created


def _download(source: Source, path: str) -> str:
    """Download ``source`` to ``path`` and verify its sha256; a failed download leaves no empty
    folders behind."""
    created = _make_dirs(osp.dirname(path))
    try:
        download_file(source.url, path)
        _check_hash(path, source, source.url, remove=True)
    except BaseException:
        for folder in created:
            if osp.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        raise
    return path


def _cache_problem(path: str, source: Source) -> Optional[str]:
    """Why a cached file must be fetched again (its recorded sha256, then its bytes), or None."""
    if source.sha256 is not None:
        actual = sha256_of(path)
        if actual != source.sha256.lower():
            return f'sha256 {actual} != expected {source.sha256}'
    return checkpoint_problem(path)


def _try_sources(name, preset, sources, root, progress, logger):
    """(path, source) of the first source that downloads, or (None, None); and the failures."""
    attempts = []
    for path, source in _cache_files(preset, sources, root):
        if progress:
            print_log(f'{name}: downloading {source.url}', logger=logger)
        try:
            return _download(source, path), source, attempts
        except WeightsHashError:
            raise
        except Exception as e:  # noqa: BLE001  (HTTP, network, disk: recorded and reported)
            attempts.append((source.url, describe_error(e)))
    return None, None, attempts


def _failure_line(name, preset, attempts, offline_dirs) -> str:
    tried = '; '.join(f'{url} ({why})' for url, why in attempts)
    offline = ', '.join(offline_dirs) if offline_dirs else f'none (set ${OFFLINE_ENV})'
    return (f'{name}: no source could be fetched: {tried}. Offline folders searched: {offline}. '
            f'On a machine with internet run `{DOWNLOAD_TOOL} {preset} --dir DIR` and set '
            f'{OFFLINE_ENV}=DIR, or download a file yourself and pass its path as '
            'checkpoint=/path/to/file (init_cfg Pretrained / pretrained= / --weights). '
            f'{TRAIN_WITHOUT_WEIGHTS}')


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
        progress: log a line as each download starts (the body is read in one piece: no
            byte counter).
        search_env: also search ``$FOCALNET_WEIGHTS_DIR``.
    """
    preset = parse_short_name(name)
    name = SCHEME + preset
    sources = tuple(WEIGHT_SOURCES[preset] if sources is None else sources)
    offline_dirs = [d for d in (weights_dir, os.environ.get(OFFLINE_ENV) if search_env else None)
                    if d]
    root = cache_root(cache_dir)

    def first_look():
        """Local rank 0: 1. offline folder, 2. cache (a damaged copy removed), 3. network."""
        found = _find_local(preset, sources, offline_dirs, root)
        if found is not None and found[2] == 'cached':
            problem = _cache_problem(found[0], found[1])
            if problem is not None:
                os.remove(found[0])
                print_log(f'{name}: removed the cached {found[0]} ({problem}); downloading it again',
                          logger=logger, level=logging.WARNING)
                found = None
        attempts = []
        if found is None and sources:
            path, source, attempts = _try_sources(name, preset, sources, root, progress, logger)
            if path is not None:
                found = path, source, 'downloaded'
        return found, attempts

    # Every other rank of the machine waits for local rank 0, then finds its file on disk.
    first = local_rank_zero_first(first_look)
    found, attempts = first if first is not None else (
        _find_local(preset, sources, offline_dirs, root), [])
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
            f'${OFFLINE_ENV} as {OFFICIAL_FILES.get(preset, preset)}. {TRAIN_WITHOUT_WEIGHTS}')
    if not attempts:
        attempts = [(s.url, 'not downloaded by local rank 0; see its log') for s in sources]
    raise WeightsUnavailableError(_failure_line(name, preset, attempts, offline_dirs))


def download_all(names: Sequence[str], folder: str, progress: bool = True, logger='current'):
    """Fetch the best source of each name into ``folder`` (the offline-folder layout)."""
    return {SCHEME + parse_short_name(n): fetch_weights(n, weights_dir=folder, cache_dir=folder,
                                                        progress=progress, logger=logger,
                                                        search_env=False)
            for n in names}
