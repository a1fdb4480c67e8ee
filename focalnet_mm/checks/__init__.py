"""Checks before training or testing, each a one-line error or warning that names the fix.

- :mod:`.data_paths`: the files and folders a config's data sets point at exist (a second,
  before any model is built);
- :mod:`.training`: the config and the built runner against their data (classes, other
  backbones' weights, warm-up, training scale);
- :mod:`.dataset_files`: every image and annotation of a data set (``tools/check_dataset.py``).
"""
