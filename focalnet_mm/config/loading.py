"""Read a config the way every tool here does: overrides applied, work dir chosen as mmdet's."""
import os.path as osp
from typing import Optional

from mmengine.config import Config


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    if not osp.isfile(path):
        raise FileNotFoundError(f'Config file {path} not found; configs live under configs/ '
                                '(see the README, "Model zoo and weights").')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def default_work_dir(config_path: str) -> str:
    """mmdet's rule: ./work_dirs/<config name>."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def prepare_config(config_path: str, cfg_options: Optional[dict], launcher: str,
                   work_dir: Optional[str]) -> Config:
    """Steps shared by train/test: load the config, apply overrides, choose the work dir."""
    cfg = load_config(config_path, cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(config_path)
    return cfg
