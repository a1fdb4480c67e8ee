# Copyright (c) focalnet-mm contributors. All rights reserved.
"""Pre-fetch FocalNet ImageNet weights for offline machines: the installed command
``focalnet-download-weights`` (focalnet_mm/weights/download.py), runnable from a checkout.

    python tools/download_weights.py tiny_lrf --dir weights/    # = focalnet-download-weights ...
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without install

from focalnet_mm.weights.download import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
