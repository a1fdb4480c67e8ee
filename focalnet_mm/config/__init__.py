"""What the tools do to a config before a runner is built.

- :mod:`.loading`: read a config, apply ``--cfg-options``, choose the work dir (train and test);
- :mod:`.safe_training`: give a config that lacks them the safe types of
  ``configs/_base_/safe_training.py`` (listed in one log block) and turn ``--resume`` into a
  checked ``load_from``.
"""
