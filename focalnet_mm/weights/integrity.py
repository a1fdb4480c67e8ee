"""Is this a whole checkpoint file? Answered from its bytes, without unpickling anything.

One check for every file the package keeps or reads back: a download before it is cached, a
cached file before it is used again, a training checkpoint before ``--resume`` picks it
(``engine/checkpoint.py``).
"""
import hashlib
import json
import os.path as osp
import zipfile
from typing import Optional

#: safetensors headers are JSON of a few hundred kB at most; a larger "length" is not one
_MAX_SAFETENSORS_HEADER = 1 << 27


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` is not a whole checkpoint file (one short line), or None.

    * torch zip (what ``torch.save`` and mmengine write): the central directory sits at the end,
      so a cut file has none, and every member carries a CRC that is checked;
    * safetensors: the file must be exactly as long as its header declares;
    * legacy torch pickle: accepted by its first byte (its length is recorded nowhere; a download
      is checked against its Content-Length instead);
    * anything else (an HTML page served with status 200, an empty file) is named.
    """
    if not osp.isfile(path):
        return 'no such file'
    size = osp.getsize(path)
    if size == 0:
        return 'truncated or damaged: an empty file (0 bytes)'
    with open(path, 'rb') as f:
        head = f.read(8)
        if head.startswith(b'PK'):
            try:
                with zipfile.ZipFile(f) as archive:
                    bad = archive.testzip()
            except (zipfile.BadZipFile, OSError, EOFError, ValueError):
                return (f'truncated or damaged: a zip archive cut short or damaged (no end record; '
                        f'{size} bytes)')
            return None if bad is None else f'truncated or damaged: {bad} fails its CRC check'
        if head[:1] == b'\x80':
            return None
        declared = int.from_bytes(head, 'little') if len(head) == 8 else 0
        if 0 < declared < min(size, _MAX_SAFETENSORS_HEADER):
            header = f.read(declared)
            try:
                tensors = json.loads(header)
                end = max([0] + [t['data_offsets'][1] for k, t in tensors.items()
                                 if k != '__metadata__'])
            except (ValueError, KeyError, TypeError, IndexError, AttributeError):
                pass  # not a safetensors header
            else:
                expected = 8 + declared + end
                return None if size == expected else (
                    f'truncated or damaged: a safetensors file cut short or damaged ({size} of the '
                    f'{expected} bytes its header declares)')
    what = 'an HTML page' if head.lstrip()[:1] == b'<' else f'a file that starts with {head!r}'
    return f'{what}, not a checkpoint (torch zip / pickle or safetensors)'
