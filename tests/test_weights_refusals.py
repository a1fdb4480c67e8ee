"""Silent mis-loads are refused with a one-line fix, and nothing in a checkpoint runs."""
import argparse
import collections
import os

import numpy as np
import pytest
import torch

import focalnet_mm  # noqa: F401  (installs the mmengine safe globals that must stay safe)
from focalnet_mm import FocalNet
from focalnet_mm import weights as W
from focalnet_mm.archs import resolve_arch
from focalnet_mm.weights.adapt import check_compatible, resize_focal_kernels
from focalnet_mm.weights.io import UnsafeCheckpointError

TINY = dict(embed_dim=16, depths=(1, 1, 2, 1), focal_levels=2, focal_windows=3)


@pytest.fixture(autouse=True)
def seeded():
    """Deterministic random weights: every tolerance holds for a known draw, not by luck."""
    torch.manual_seed(0)


def net(**kw):
    arch = dict(TINY)
    arch.update({k: kw.pop(k) for k in list(kw) if k in resolve_arch(TINY)})
    return FocalNet(arch=arch, drop_path_rate=0., **kw)


def save(tmp_path, obj, name='ckpt.pth'):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def refusal(tmp_path, file_model_kw, model_kw, match, extra=None):
    checkpoint = {'model': net(**file_model_kw).state_dict()}
    checkpoint.update(extra or {})
    with pytest.raises(ValueError, match=match) as info:
        W.load_pretrained(net(**model_kw), save(tmp_path, checkpoint))
    assert '\n' not in str(info.value)  # one line
    return str(info.value)


@pytest.mark.parametrize('file_kw, model_kw, match', [
    (dict(use_conv_embed=True), {}, r'7x7 stem / 3x3 downsample kernels .* set use_conv_embed=True'),
    ({}, dict(use_conv_embed=True), r'4x4 stem / 2x2 downsample kernels .* set use_conv_embed=False'),
    (dict(use_layerscale=True), {}, r'has layer-scale tensors .* set use_layerscale=True'),
    ({}, dict(use_layerscale=True), r'has no layer-scale tensors .* set use_layerscale=False'),
    (dict(use_postln_in_modulation=True), {},
     r'has modulation.ln tensors .* set use_postln_in_modulation=True'),
    ({}, dict(use_postln_in_modulation=True), r'set use_postln_in_modulation=False'),
    (dict(focal_levels=3), {},
     r'has 3 focal levels \(layers.0.blocks.0.modulation.f\) but the backbone has 2: set focal_levels=3'),
    ({}, dict(in_channels=4), r'set in_channels=3'),
], ids=['conv_embed', 'no_conv_embed', 'layerscale', 'no_layerscale', 'postln_in_mod',
        'no_postln_in_mod', 'fewer_levels', 'in_channels'])
def test_shape_visible_refusals(tmp_path, file_kw, model_kw, match):
    refusal(tmp_path, file_kw, model_kw, match)


def test_channel_depth_mismatch_names_the_preset(tmp_path):
    file_sd = FocalNet(arch='tiny_lrf').state_dict()
    path = save(tmp_path, {'model': file_sd})
    with pytest.raises(ValueError,
                       match=r"The checkpoint is arch='tiny_lrf' \(embed_dim=96, depths=\(2, 2, 6, 2\), "
                       r"focal_levels=3\) but the backbone \(arch='custom'\) has embed_dim=16.*"
                       r"set arch='tiny_lrf' on the backbone"):
        W.load_pretrained(net(), path)
    # a file that matches no preset says which keywords to set
    custom = net(embed_dim=24).state_dict()
    with pytest.raises(ValueError, match=r'no released preset .* set embed_dim=24, depths=\(1, 1, 2, 1\)'):
        W.load_pretrained(net(), save(tmp_path, custom, 'custom.pth'))


@pytest.mark.parametrize('flag, model_kw', [('USE_POSTLN', dict(use_postln=False)),
                                            ('NORMALIZE_MODULATOR', dict(normalize_modulator=False))])
def test_training_config_flags_are_checked(tmp_path, flag, model_kw):
    """use_postln / normalize_modulator are invisible in keys: the file's own config decides."""
    config = {'MODEL': {'FOCAL': {flag: True, 'FOCAL_LEVELS': [2] * 4, 'FOCAL_WINDOWS': [3] * 4}}}
    msg = refusal(tmp_path, {}, model_kw, rf"trained with {flag.lower()}=True \(from its training config "
                  rf".*set {flag.lower()}=True", extra={'config': config})
    assert 'MODEL.FOCAL' in msg
    # the matching model loads
    good = net(**{flag.lower(): True})
    W.load_pretrained(good, save(tmp_path, {'model': net(**{flag.lower(): True}).state_dict(),
                                            'config': config}, 'good.pth'))


def test_training_config_levels_windows_checked_against_tensors(tmp_path):
    config = {'MODEL': {'FOCAL': {'FOCAL_LEVELS': [3, 3, 3, 3], 'FOCAL_WINDOWS': [3, 3, 3, 3]}}}
    refusal(tmp_path, {}, {}, r'says focal_levels=\[3, 3, 3, 3\] .* tensors have focal_levels=\[2, 2, 2, 2\]',
            extra={'config': config})
    # levels and windows that only differ from the model are adapted, not refused
    config = {'MODEL': {'FOCAL': {'FOCAL_LEVELS': [2] * 4, 'FOCAL_WINDOWS': [3] * 4, 'USE_POSTLN': False}}}
    report = W.load_pretrained(net(focal_windows=9, focal_levels=3),
                               save(tmp_path, {'model': net().state_dict(), 'config': config}))
    assert report.resized and report.expanded


def test_timm_post_norm_keys_declare_use_postln(tmp_path):
    timm = pytest.importorskip('timm')
    post = timm.models.focalnet.FocalNet(embed_dim=16, depths=(1, 1, 2, 1), use_post_norm=True,
                                         num_classes=0)
    with pytest.raises(ValueError, match=r'use_postln=True \(from its timm key names \(norm1_post\)\)'):
        W.load_pretrained(net(), save(tmp_path, post.state_dict()))
    pre = timm.models.focalnet.FocalNet(embed_dim=16, depths=(1, 1, 2, 1), num_classes=0)
    with pytest.raises(ValueError, match=r'set use_postln=False'):
        W.load_pretrained(net(use_postln=True), save(tmp_path, pre.state_dict(), 'pre.pth'))


def test_preset_flags_warn_when_the_file_does_not_say():
    """large_fl4 was released with normalize_modulator=True (yaml): a model without it is warned
    (pure check on descriptions: no 200M-parameter model needed)."""
    description = dict(embed_dim=192, depths=(2, 2, 18, 2), patch_size=4, in_channels=3,
                       stem_kernel=7, downsample_kernel=3, focal_levels=[4] * 4, focal_windows=[3] * 4,
                       use_conv_embed=True, use_layerscale=True, use_postln_in_modulation=False)
    spec = dict(resolve_arch('large_fl4'), arch='large_fl4', in_channels=3, normalize_modulator=False,
                depths=(2, 2, 18, 2))
    warnings = check_compatible(description, spec, declared={})
    assert warnings == ["the checkpoint matches arch='large_fl4', released with normalize_modulator=True, "
                        'but the backbone has normalize_modulator=False (the file does not say; set it if '
                        'the file is the released one)']
    assert check_compatible(description, dict(spec, normalize_modulator=True), declared={}) == []
    # a file that states its flag is trusted over the preset table
    assert check_compatible(description, spec, declared={'normalize_modulator': False}) == []


def test_unknown_missing_and_prefix_errors(tmp_path):
    sd = net().state_dict()
    truncated = {k: v for k, v in sd.items() if 'layers.2.blocks.1.mlp' not in k}
    with pytest.raises(ValueError, match=r'lacks 4 backbone tensors .*layers\.2\.blocks\.1\.mlp'):
        W.load_pretrained(net(), save(tmp_path, truncated))
    extra = dict(sd, **{'layers.0.blocks.0.modulation.extra.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match=r'tensors that this FocalNet does not .*modulation.extra'):
        W.load_pretrained(net(), save(tmp_path, extra, 'extra.pth'))
    with pytest.raises(ValueError,
                       match=r"No checkpoint key starts with prefix='encoder.'.*fix init_cfg prefix"):
        W.load_pretrained(net(), save(tmp_path, {'state_dict': sd}, 'p.pth'), prefix='encoder')
    resnet = {'conv1.weight': torch.zeros(64, 3, 7, 7), 'bn1.weight': torch.zeros(64)}
    with pytest.raises(ValueError, match=r'Not a FocalNet checkpoint.*prefix="backbone."'):
        W.load_pretrained(net(), save(tmp_path, resnet, 'resnet.pth'))
    with pytest.raises(FileNotFoundError, match='check the path in init_cfg'):
        W.load_pretrained(net(), str(tmp_path / 'nope.pth'))


def test_kernel_crop_when_model_window_is_smaller():
    sd = net(focal_windows=5).state_dict()
    target = {k: v.shape for k, v in net().state_dict().items()}
    out, resized = resize_focal_kernels(sd, target)
    key = 'layers.0.blocks.0.modulation.focal_layers.1.0.weight'
    assert (key, 7, 5) in resized and len(resized) == 2 * 5
    assert torch.equal(out[key], sd[key][..., 1:6, 1:6])


class Payload:
    """Unpickling this opens (creates) a file: a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / 'payload_ran'
    path = save(tmp_path, {'model': net().state_dict(), 'extra': Payload(str(marker))})
    with pytest.raises(UnsafeCheckpointError, match=r'pickled object .*open.*--trust-pickle') as info:
        W.load_pretrained(net(), path)
    assert 'focalnet2mm.py' in str(info.value) and '\n' not in str(info.value)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        W.is_mmengine_model_checkpoint(path)
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_compat_safe_globals_stay_safe(tmp_path):
    """mmengine's types load (numpy meta, defaultdict), but a defaultdict factory cannot smuggle code."""
    sd = net().state_dict()
    ok = {'meta': {'seed': np.int64(3), 'hist': np.zeros(2)}, 'state_dict': collections.OrderedDict(sd)}
    W.load_pretrained(net(), save(tmp_path, ok))
    evil = {'state_dict': sd, 'meta': collections.defaultdict(os.system)}
    with pytest.raises(UnsafeCheckpointError, match='system'):
        W.read_checkpoint(save(tmp_path, evil, 'evil.pth'))


def test_yacs_config_is_refused_with_the_converter_fix(tmp_path, yacs_cfg_node):
    """Official training checkpoints may pickle a yacs CfgNode: refused, the message names the fix."""
    CfgNode = yacs_cfg_node
    path = save(tmp_path, {'model': net().state_dict(), 'config': CfgNode(MODEL=CfgNode())})
    with pytest.raises(UnsafeCheckpointError, match=r'yacs\.config\.CfgNode.*--trust-pickle'):
        W.load_pretrained(net(), path)


def test_detr_args_namespace_is_readable(tmp_path):
    sd = {'backbone.0.body.' + k: v for k, v in net().state_dict().items()}
    path = save(tmp_path, {'model': sd, 'args': argparse.Namespace(backbone='focalnet_L_384_22k')})
    report = W.load_pretrained(net(), path)
    assert report.prefix == 'backbone.0.body.' and not report.missing_expected


def test_url_checkpoint_is_cached_then_read_safely(tmp_path, monkeypatch, server):
    """A URL served by a real local server: downloaded once into torch.hub's cache, its
    name-<sha256 prefix>.pth verified, then read by the safe reader (the pickled code never runs)."""
    import hashlib
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    source = save(tmp_path, {'model': net().state_dict(), 'extra': Payload(str(tmp_path / 'ran'))})
    body = open(source, 'rb').read()
    prefix = hashlib.sha256(body).hexdigest()[:8]
    url = server.add(f'/weights/focalnet_tiny-{prefix}.pth?download=1', body)
    with pytest.raises(UnsafeCheckpointError):
        W.load_pretrained(net(), url)
    cached = tmp_path / 'torch_home' / 'hub' / 'checkpoints' / f'focalnet_tiny-{prefix}.pth'
    assert cached.read_bytes() == body
    assert not (tmp_path / 'ran').exists()
    with pytest.raises(UnsafeCheckpointError):
        W.load_pretrained(net(), url)  # from the cache: no second request
    assert len(server.requests) == 1

    # a file whose bytes do not match the sha256 prefix in its name is refused and not kept
    wrong = server.add('/weights/focalnet_tiny-00000000.pth', body)
    with pytest.raises(W.WeightsHashError, match=r'does not start with 00000000') as error:
        W.load_pretrained(net(), wrong)
    assert '\n' not in str(error.value)
    assert not (cached.parent / 'focalnet_tiny-00000000.pth').exists()


class _Detector(torch.nn.Module):
    """A whole model as mmdet has it: a FocalNet backbone plus another module."""

    def __init__(self, **backbone):
        super().__init__()
        self.backbone = FocalNet(arch=dict(embed_dim=16, depths=[1, 1, 1, 1]), focal_windows=9,
                                 **backbone)
        self.neck = torch.nn.Conv2d(16, 8, 1)


def test_whole_model_checkpoint_that_does_not_fit_is_refused_in_one_line(tmp_path, capsys):
    trained = _Detector(focal_levels=3)
    path = str(tmp_path / 'epoch_36.pth')
    torch.save({'state_dict': trained.state_dict(),
                'meta': {'cfg': "model = dict(backbone=dict(type='FocalNet', arch='tiny_lrf'))"}},
               path)
    W.check_whole_model_checkpoint(_Detector(focal_levels=3), path)  # fits: silent
    with pytest.raises(ValueError) as err:
        W.check_whole_model_checkpoint(_Detector(focal_levels=2), path)
    message = str(err.value)
    assert '\n' not in message
    # the gate projection f has L+1 more outputs per level: shapes differ, and the 3rd level's
    # kernels are in the file but not the model (unexpected: allowed, only logged)
    assert 'tensors differ in shape (first: backbone.layers.0.blocks.0.modulation.f.weight' in message
    assert "trained with backbone arch='tiny_lrf'" in message
    assert 'Use the config it was trained with' in message

    missing = {k: v for k, v in trained.state_dict().items() if not k.startswith('neck.')}
    torch.save({'state_dict': missing}, path)
    with pytest.raises(ValueError, match='2 model tensors are not in the file .first: neck.weight'):
        W.check_whole_model_checkpoint(trained, path)

    extra = dict(trained.state_dict(), **{'roi_head.fc.weight': torch.zeros(2, 2)})
    torch.save({'state_dict': extra}, path)
    W.check_whole_model_checkpoint(trained, path)  # extra tensors: a warning, not an error
    assert '1 tensors of the file are not used by the model (roi_head.fc)' in capsys.readouterr().out


def test_empty_or_truncated_file_is_one_line(tmp_path):
    """An interrupted copy or download: a ValueError naming the file, not torch's EOFError or
    zip-reader traceback (tools print it as one line)."""
    empty, truncated = tmp_path / 'empty.pth', tmp_path / 'truncated.pth'
    empty.write_bytes(b'')
    torch.save({'w': torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(ValueError, match=r'empty\.pth is empty \(0 bytes\), not a checkpoint'):
        W.read_checkpoint(str(empty))
    with pytest.raises(ValueError, match=r'truncated\.pth is not a readable checkpoint') as error:
        W.read_checkpoint(str(truncated))
    assert '\n' not in str(error.value)
