# Copyright (c) focalnet-mm contributors. All rights reserved.
"""Pre-fetch FocalNet ImageNet weights for offline machines (installed as ``focalnet-download-weights``).

Run on a machine with internet, copy DIR to the cluster, and set ``FOCALNET_WEIGHTS_DIR=DIR``
there: ``focalnet://<preset>`` then reads the files from DIR without any network access.

Examples::

    python tools/download_weights.py tiny_lrf focalnet://large_fl4 --dir weights/
    python tools/download_weights.py --all --dir weights/
    python tools/download_weights.py --list
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without install

from focalnet_mm.weights import sources as S  # noqa: E402
from focalnet_mm.weights.download import WeightsHashError  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog=S.DOWNLOAD_TOOL, description=__doc__.split('\n')[0])
    parser.add_argument('names', nargs='*', help='presets or focalnet://<preset> short names')
    parser.add_argument('--all', action='store_true', help='every preset that has a source')
    parser.add_argument('--dir', help='folder to fill (the offline-folder layout)')
    parser.add_argument('--list', action='store_true', help='print the table of sources and exit')
    parser.add_argument('--no-progress', action='store_true',
                        help='no log line as each download starts')
    args = parser.parse_args(argv)
    if not args.list and (bool(args.names) == args.all or not args.dir):
        parser.error('give NAME... or --all, and --dir DIR (or --list)')
    return args


def print_table():
    for preset, sources in S.WEIGHT_SOURCES.items():
        print(f'{S.SCHEME}{preset}')
        for source in sources:
            print(f'  {source.format:8s} {source.url}  sha256={source.sha256 or "unknown"}')
        if not sources:
            print(f'  not obtainable: {S.UNOBTAINABLE.get(preset, "")}')


def main(argv=None):
    """Fill ``--dir``; returns the exit status (1 when any name failed)."""
    args = parse_args(argv)
    if args.list:
        print_table()
        return 0
    names = [n for n, s in S.WEIGHT_SOURCES.items() if s] if args.all else args.names
    folder = osp.abspath(args.dir)
    fetched, failed = {}, {}
    for i, name in enumerate(names, 1):
        print(f'[{i}/{len(names)}] {name}', flush=True)
        try:
            fetched.update(S.download_all([name], folder, progress=not args.no_progress))
        except (S.WeightsUnavailableError, WeightsHashError, ValueError) as e:
            failed[name] = str(e)
            print(f'  failed: {e}', flush=True)
    for name, path in fetched.items():
        print(f'fetched {name}: {path}')
    if failed:
        print(f'FAILED (reasons above): {" ".join(failed)}')
    if fetched:
        print(f'\nOn the offline machine: export {S.OFFLINE_ENV}={folder}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
