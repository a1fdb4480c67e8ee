"""The stack's compatibility fixes: safe checkpoint loading, config bases, transformers."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import focalnet_mm  # noqa: F401  (applies the fixes)

from conftest import REPO_ROOT


def run_python(code):
    return subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)


def test_mmengine_checkpoint_types_load_with_weights_only(tmp_path):
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub.get_instance('compat-test')
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('iter', 7)
    ckpt = dict(meta=dict(seed=np.int64(3), epoch=1, hist=np.arange(4, dtype=np.float32)),
                message_hub=hub.state_dict(), state_dict={'w': torch.ones(2)})
    path = tmp_path / 'ckpt.pth'
    torch.save(ckpt, path)
    loaded = torch.load(path)  # torch >= 2.6 default: weights_only=True
    assert isinstance(loaded['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    assert loaded['meta']['seed'] == 3 and loaded['meta']['hist'].dtype == np.float32
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))


class _Payload:
    def __reduce__(self):
        return (os.system, ('touch "$FOCALNET_PWNED"', ))


def test_arbitrary_pickle_is_still_refused(tmp_path, monkeypatch):
    marker = tmp_path / 'pwned'
    monkeypatch.setenv('FOCALNET_PWNED', str(marker))
    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        pickle.dump({'state_dict': {}, 'x': _Payload()}, f)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    assert not marker.exists()


class _GetattrPayload:
    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return (getattr, (HistoryBuffer, 'update'))


def test_getattr_in_checkpoints_is_limited_to_history_buffer_statistics(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save({'x': _GetattrPayload()}, path)
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(path)


@pytest.fixture(scope='module')
def fresh_import():
    """One fresh interpreter for the import-time checks (each interpreter costs seconds):
    pkg_resources unavailable (setuptools >= 81 drops it), ``import focalnet_mm`` alone, two
    backbones built, then the entry config parsed through its ``mmdet::`` base."""
    result = run_python("import sys; sys.modules['pkg_resources'] = None\n"
                        "import focalnet_mm\n"
                        "print('matplotlib imported:', 'matplotlib' in sys.modules)\n"
                        "focalnet_mm.FocalNet(depths=(1, 1, 1, 1), embed_dim=8)\n"
                        "focalnet_mm.FocalNet(depths=(1, 1, 1, 1), embed_dim=8)\n"
                        "from mmengine.config import Config\n"
                        "cfg = Config.fromfile('configs/maskrcnn_focalnet_t_3x.py')\n"
                        "print('config:', cfg.model.type, cfg.model.backbone.type, cfg.train_cfg.max_epochs)")
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


@pytest.mark.slow  # a fresh interpreter (import-time behaviour)
def test_config_bases_resolve_without_pkg_resources(fresh_import):
    assert 'config: MaskRCNN FocalNet 36' in fresh_import.splitlines()


@pytest.mark.slow  # a fresh interpreter (import-time behaviour)
def test_import_draws_nothing_and_the_first_backbone_logs_the_fixes_once(fresh_import):
    assert 'matplotlib imported: False' in fresh_import  # the hook imports it when it first draws
    logged = [line for line in fresh_import.splitlines() if 'focalnet_mm.compat:' in line]
    assert len(logged) == 1 and 'config bases' in logged[0] and 'safe loading' in logged[0]


def test_fixes_are_gated_on_the_installed_versions(monkeypatch):
    from packaging.version import Version

    from focalnet_mm import compat
    versions = {'torch': '2.14.1', 'mmengine': '0.10.7', 'mmpretrain': '1.2.0', 'transformers': '4.51.3'}
    monkeypatch.setattr(compat, '_version', lambda name: Version(versions[name]))
    assert compat.checkpoints_need_safe_globals() and compat.config_bases_need_resolver()
    assert compat.check_transformers() is None
    versions.update(torch='2.5.1', mmengine='0.11.0')
    assert not compat.checkpoints_need_safe_globals() and not compat.config_bases_need_resolver()
    versions.update(transformers='5.0.0')
    with pytest.warns(UserWarning, match=r'pip install "transformers>=4.28,<4.52"'):
        assert 'breaks mmpretrain 1.2.0' in compat.check_transformers()


def test_runner_logs_leave_out_mmengines_unavoidable_file_client_notices():
    """mmengine 0.10.7's CheckpointHook builds a FileClient in every run: its two notices are
    filtered on the runner's logger; other records, and file_client_args' own notice, pass."""
    import logging

    from mmengine.fileio import FileClient
    from mmengine.logging import MMLogger

    from focalnet_mm.compat import quiet_upstream_notices

    logger = MMLogger.get_instance('test_compat_notices', log_level='INFO')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    quiet_upstream_notices(logger)
    quiet_upstream_notices(logger)  # once
    assert len(logger.filters) == 1
    FileClient.infer_client(None, '/tmp')  # what CheckpointHook.before_train does
    logger.warning('"file_client_args" will be deprecated in future.')
    assert [r.getMessage() for r in records] == ['"file_client_args" will be deprecated in future.']
