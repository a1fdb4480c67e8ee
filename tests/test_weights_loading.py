"""Every FocalNet checkpoint format loads into focalnet-mm and reproduces the source model.

References are independent implementations: timm's FocalNet (stage maps, logits) and HF
transformers' FocalNet (stage hidden states), both with random weights.
"""
import pytest
import torch
from mmengine.logging import MMLogger
from safetensors.torch import save_file

import focalnet_mm  # noqa: F401
from focalnet_mm import FocalNet
from focalnet_mm import weights as W
from focalnet_mm.archs import resolve_arch
from focalnet_mm.weights.adapt import pad_or_crop_kernel
from focalnet_mm.weights.formats import timm_to_official

from conftest import perturb_

timm = pytest.importorskip('timm')
from timm.models.focalnet import FocalNet as TimmFocalNet  # noqa: E402

TINY = dict(embed_dim=16, depths=(1, 1, 2, 1), focal_levels=2, focal_windows=3)
#: a tiny model with every large-model flag on (conv embed, post-LN, layer scale, modulation LN)
TINY_LARGE = dict(embed_dim=16, depths=(1, 1, 2, 1), focal_levels=3, focal_windows=3,
                  use_conv_embed=True, use_postln=True, use_layerscale=True,
                  use_postln_in_modulation=True, normalize_modulator=True)


def timm_model(arch=TINY, num_classes=10):
    a = dict(resolve_arch(arch))
    n = len(a['depths'])
    torch.manual_seed(0)  # deterministic weights: the tolerances below are not luck
    return perturb_(TimmFocalNet(
        embed_dim=a['embed_dim'], depths=a['depths'], focal_levels=(a['focal_levels'], ) * n,
        focal_windows=(a['focal_windows'], ) * n, use_overlap_down=a['use_conv_embed'],
        use_post_norm=a['use_postln'], use_post_norm_in_modulation=a['use_postln_in_modulation'],
        normalize_modulator=a['normalize_modulator'],
        layerscale_value=1e-4 if a['use_layerscale'] else None, num_classes=num_classes,
        drop_path_rate=0.))


def ours(arch=TINY, **kw):
    kw.setdefault('drop_path_rate', 0.)
    return FocalNet(arch=arch, **kw).eval()


def mmpretrain_classifier(arch=TINY, num_classes=10):
    pytest.importorskip('mmpretrain')
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='FocalNet', arch=arch, out_indices=(3, ), drop_path_rate=0.),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=128))).eval()


def stage_maps(model, x):
    """Pre-downsample stage maps of our FocalNet (NCHW, before norm{i})."""
    maps = {}
    hooks = [layer.register_forward_hook(lambda m, i_, out, i=i: maps.__setitem__(
        i, out[0].permute(0, 3, 1, 2))) for i, layer in enumerate(model.layers)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return [maps[i] for i in sorted(maps)]


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def official_state_dict(timm_net):
    """The official layout of a timm model's weights, through our converter."""
    return timm_to_official(timm_net.state_dict())


@pytest.fixture(autouse=True)
def seeded():
    """Deterministic random weights: every tolerance holds for a known draw, not by luck."""
    torch.manual_seed(0)


@pytest.fixture
def run_log(tmp_path):
    """A current MMLogger writing to a file (as the Runner's does); removed afterwards."""
    name = f'test_weights_{tmp_path.name}'
    logger = MMLogger.get_instance(name, log_file=str(tmp_path / 'run.log'), log_level='INFO')

    def read():
        for handler in logger.handlers:
            handler.flush()
        return (tmp_path / 'run.log').read_text()

    yield read
    for handler in logger.handlers:
        handler.close()
    logger.handlers.clear()
    MMLogger._instance_dict.pop(name, None)


@pytest.fixture(scope='module')
def x():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope='module')
def tiny_timm():
    return timm_model(TINY)


@pytest.fixture(scope='module')
def tiny_timm_maps(tiny_timm, x):
    with torch.no_grad():
        return tiny_timm.forward_intermediates(x, intermediates_only=True)


def _write(tmp_path, name, obj):
    path = tmp_path / name
    if name.endswith('.safetensors'):
        save_file({k: v.contiguous() for k, v in obj.items()}, str(path))
    else:
        torch.save(obj, path)
    return str(path)


def _out_norms(indices, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return {f'norm{i}.{p}': torch.randn(16 * 2**i, generator=gen)
            for i in indices for p in ('weight', 'bias')}


def _backbone_only(t):
    return {k: v for k, v in official_state_dict(t).items() if not k.startswith(('head.', 'norm.'))}


#: format -> (file name, checkpoint object, output norms expected missing after loading)
FORMATS = {
    'official_model_wrapper': lambda t: ('a.pth', {'model': official_state_dict(t)}, [0, 1, 2]),
    'official_raw': lambda t: ('a.pth', official_state_dict(t), [0, 1, 2]),
    'mmdet_state_dict_backbone_prefix': lambda t: ('a.pth', {'meta': {'epoch': 12}, 'state_dict': {
        'backbone.' + k: v for k, v in (_backbone_only(t) | _out_norms(range(4))).items()}
        | {'neck.lateral_convs.0.conv.weight': torch.zeros(4, 16, 1, 1)}}, []),
    'mmengine_module_backbone_prefix': lambda t: ('a.pth', {'state_dict': {
        'module.backbone.' + k: v for k, v in official_state_dict(t).items()}}, [0, 1, 2]),
    'focalnet_dino': lambda t: ('a.pth', {'model': {
        'backbone.0.body.' + k: v for k, v in (_backbone_only(t) | _out_norms((1, 2, 3))).items()}
        | {'transformer.level_embed': torch.zeros(4, 256)}}, [0]),
    'timm_pth': lambda t: ('a.pth', t.state_dict(), [0, 1, 2]),
    'timm_safetensors': lambda t: ('model.safetensors', t.state_dict(), [0, 1, 2]),
}


@pytest.mark.parametrize('fmt', sorted(FORMATS))
def test_format_loads_and_reproduces_timm(fmt, tmp_path, tiny_timm, tiny_timm_maps, x):
    name, obj, missing_norms = FORMATS[fmt](tiny_timm)
    path = _write(tmp_path, name, obj)
    model = ours()
    report = W.load_pretrained(model, path)
    errors = [rel_err(a, b) for a, b in zip(stage_maps(model, x), tiny_timm_maps)]
    assert max(errors) <= 1e-5, errors
    assert report.format == ('timm' if fmt.startswith('timm') else 'official')
    # every backbone tensor is loaded; only the output norms absent from the file keep their init
    assert sorted(report.missing_expected) == sorted(
        f'norm{i}.{p}' for i in missing_norms for p in ('weight', 'bias'))
    assert len(report.loaded) + len(report.missing_expected) == len(model.state_dict())
    if fmt.startswith(('mmdet', 'focalnet_dino')):  # trained output norms are loaded as they are
        file_norm = obj['state_dict' if 'state_dict' in obj else 'model']
        key = next(k for k in file_norm if k.endswith('norm3.weight'))
        assert torch.equal(model.norm3.weight, file_norm[key])


def test_mmengine_prefix_reports_dropped_keys(tmp_path, tiny_timm):
    path = _write(tmp_path, *FORMATS['mmdet_state_dict_backbone_prefix'](tiny_timm)[:2])
    report = W.load_pretrained(ours(), path, prefix='backbone')
    assert report.prefix == 'backbone.' and report.wrapper == 'state_dict'
    assert report.dropped["outside prefix 'backbone.'"] == ['neck.lateral_convs.0.conv.weight']


def test_classifier_norm_becomes_last_output_norm(tmp_path, tiny_timm, x):
    """The classifier's final norm is norm{last}: our last output == timm forward_features."""
    path = _write(tmp_path, 'a.pth', {'model': official_state_dict(tiny_timm)})
    model = ours(out_indices=(3, ))
    report = W.load_pretrained(model, path)
    assert report.mapped == [('norm', 'norm3')]
    assert report.dropped == {'classification head': ['head.weight', 'head.bias']}
    with torch.no_grad():  # after a LayerNorm over 2x2 maps: float32 noise, relative to max
        assert rel_err(model(x)[0], tiny_timm.forward_features(x)) <= 5e-5
    # a backbone without the last stage in out_indices drops it (reported)
    report = W.load_pretrained(ours(out_indices=(0, 1, 2)), path)
    assert report.mapped == [] and 'classification final norm' in report.dropped


def test_large_flags_timm_file_reproduces_timm(tmp_path, x):
    """conv embed, post-LN, layer scale, modulation LN, normalize_modulator: all mapped."""
    net = timm_model(TINY_LARGE)
    path = _write(tmp_path, 'model.safetensors', net.state_dict())
    model = ours(TINY_LARGE)
    W.load_pretrained(model, path)
    with torch.no_grad():
        ref = net.forward_intermediates(x, intermediates_only=True)
    errors = [rel_err(a, b) for a, b in zip(stage_maps(model, x), ref)]
    assert max(errors) <= 1e-5, errors


@pytest.mark.parametrize('arch', [TINY, TINY_LARGE], ids=['tiny', 'large_flags'])
@pytest.mark.parametrize('filename', ['pytorch_model.bin', 'model.safetensors'])
def test_hf_transformers_files_reproduce_hf(arch, filename, tmp_path, x):
    transformers = pytest.importorskip('transformers')
    a = resolve_arch(arch)
    config = transformers.FocalNetConfig(
        embed_dim=a['embed_dim'], depths=list(a['depths']), focal_levels=[a['focal_levels']] * 4,
        focal_windows=[a['focal_windows']] * 4, use_conv_embed=a['use_conv_embed'],
        use_layerscale=a['use_layerscale'], use_post_layernorm=a['use_postln'],
        use_post_layernorm_in_modulation=a['use_postln_in_modulation'],
        normalize_modulator=a['normalize_modulator'], num_labels=7, drop_path_rate=0.)
    hf = perturb_(transformers.FocalNetForImageClassification(config))
    folder = tmp_path / 'hf'
    folder.mkdir()
    _write(folder, filename, hf.state_dict())
    config.to_json_file(str(folder / 'config.json'))
    hidden = {}
    for i, stage in enumerate(hf.focalnet.encoder.stages):
        stage.register_forward_hook(lambda m, i_, out, i=i: hidden.__setitem__(i, out[1]))
    with torch.no_grad():
        logits = hf(x).logits
    model = ours(arch)
    report = W.load_pretrained(model, str(folder))  # the folder resolves to the weights file
    assert report.format == 'hf' and report.mapped == [('norm', 'norm3')]
    assert sorted(report.dropped['classification head']) == ['head.bias', 'head.weight']
    for i, ours_map in enumerate(stage_maps(model, x)):
        b, c, h, w = ours_map.shape
        assert rel_err(ours_map, hidden[i].transpose(1, 2).reshape(b, c, h, w)) <= 1e-5
    # the post-LN flag lives in config.json only: a model without it is refused
    if a['use_postln']:
        with pytest.raises(ValueError, match=r'use_postln=True \(from its config.json\)'):
            W.load_pretrained(ours(dict(arch, use_postln=False)), str(folder / filename))
    # the HF classifier (classifier.*, focalnet.layernorm) into an mmpretrain ImageClassifier
    classifier = mmpretrain_classifier(arch, num_classes=7)
    report = W.load_model_weights(classifier, str(folder / filename))
    assert sorted(report.head_loaded) == ['head.fc.bias', 'head.fc.weight']
    with torch.no_grad():  # logits: 7 numbers after pooling, float32 summation-order noise
        assert rel_err(classifier(x, mode='tensor'), logits) <= 5e-5


def test_focal_window_padding_is_function_preserving(tmp_path):
    """tiny_srf classification weights in a 9/11 detection model == the same file in 3/5."""
    torch.manual_seed(0)
    source = perturb_(ours('tiny_srf'))
    path = _write(tmp_path, 'tiny_srf.pth', {'model': source.state_dict()})
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    small, large = ours('tiny_srf'), ours('tiny_srf', focal_windows=9)
    W.load_pretrained(small, path)
    report = W.load_pretrained(large, path)
    assert sorted({(a, b) for _, a, b in report.resized}) == [(3, 9), (5, 11)]
    assert len(report.resized) == 2 * sum((2, 2, 6, 2))
    errors = [rel_err(a, b) for a, b in zip(stage_maps(large, x), stage_maps(small, x))]
    assert max(errors) <= 1e-6, errors
    # zero ring around the original kernel
    k = large.state_dict()['layers.0.blocks.0.modulation.focal_layers.0.0.weight']
    assert k.shape[-1] == 9 and k[..., 3:6, 3:6].abs().sum() > 0
    assert k.abs().sum() == k[..., 3:6, 3:6].abs().sum()


def test_pad_and_crop_kernel_unit():
    w = torch.arange(9.).reshape(1, 1, 3, 3)
    padded = pad_or_crop_kernel(w, 7)
    assert padded.shape[-1] == 7 and torch.equal(padded[..., 2:5, 2:5], w) and padded.sum() == w.sum()
    assert torch.equal(pad_or_crop_kernel(padded, 3), w)
    assert torch.equal(pad_or_crop_kernel(w, 1), w[..., 1:2, 1:2])
    with pytest.raises(ValueError, match='focal_windows'):
        pad_or_crop_kernel(w, 4)


def test_more_focal_levels_expand_as_official(tmp_path):
    """srf (2 levels) file into an lrf (3 levels) model, as the official det/seg loader does: q, ctx
    and existing gate rows of modulation.f copied, new gate rows zero."""
    file_sd = official_state_dict(timm_model(TINY))
    model = ours(dict(TINY, focal_levels=3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = W.load_pretrained(model, _write(tmp_path, 'a.pth', {'model': file_sd}))
    after = model.state_dict()
    key, c = 'layers.1.blocks.0.modulation.f', 32
    for suffix in ('weight', 'bias'):
        old, new = file_sd[f'{key}.{suffix}'], after[f'{key}.{suffix}']
        assert new.shape[0] == 2 * c + 3 + 1 and old.shape[0] == 2 * c + 2 + 1
        assert torch.equal(new[:2 * c], old[:2 * c])             # q and ctx projections
        assert torch.equal(new[2 * c:2 * c + 2], old[2 * c:2 * c + 2])  # the two level gates
        assert torch.count_nonzero(new[2 * c + 2]) == 0          # the new level's gate is zero
        assert torch.equal(new[-1], old[-1])                     # the global gate moves last
    new_conv = 'layers.1.blocks.0.modulation.focal_layers.2.0.weight'
    assert torch.equal(after[new_conv], before[new_conv])        # keeps the model's init
    assert new_conv in report.missing_expected
    assert len(report.expanded) == sum(TINY['depths'])
    assert 'focal levels expanded' in str(report)


def test_pretrained_shorthand_and_report_in_mmengine_log(tmp_path, tiny_timm, run_log):
    path = _write(tmp_path, 'a.pth', {'model': official_state_dict(tiny_timm)})
    model = FocalNet(arch=TINY, pretrained=path, drop_path_rate=0.)
    model.init_weights()
    log = run_log()
    assert f'FocalNet weights from {path} (official' in log and '98 tensors loaded' in log
    assert torch.equal(model.state_dict()['patch_embed.proj.weight'],
                       official_state_dict(tiny_timm)['patch_embed.proj.weight'])


def test_mmdet_model_init_weights_loads_backbone_and_logs(tmp_path, tiny_timm, run_log):
    """An mmdet Mask R-CNN whose backbone init_cfg points at an official-format file."""
    pytest.importorskip('mmdet')
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    path = _write(tmp_path, 'focalnet_tiny.pth', {'model': official_state_dict(tiny_timm)})
    cfg_file = tmp_path / 'mask_rcnn_focalnet_tiny.py'
    cfg_file.write_text(
        "_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'\n"
        "custom_imports = dict(imports=['focalnet_mm'], allow_failed_imports=False)\n"
        "model = dict(backbone=dict(_delete_=True, type='FocalNet', arch=dict(embed_dim=16, "
        "depths=(1, 1, 2, 1)), focal_windows=9, drop_path_rate=0.,\n"
        f"    init_cfg=dict(type='Pretrained', checkpoint={path!r})),\n"
        "    neck=dict(in_channels=[16, 32, 64, 128]))\n")
    cfg = Config.fromfile(str(cfg_file))
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = MODELS.build(cfg.model)
    detector.init_weights()
    log = run_log()
    assert 'FocalNet weights from' in log and 'focal kernels resized' in log and '3->9' in log
    loaded = detector.backbone.state_dict()
    source = official_state_dict(tiny_timm)
    assert torch.equal(loaded['layers.2.blocks.1.mlp.fc2.weight'], source['layers.2.blocks.1.mlp.fc2.weight'])
    assert torch.equal(loaded['layers.0.blocks.0.modulation.focal_layers.0.0.weight'][..., 3:6, 3:6],
                       source['layers.0.blocks.0.modulation.focal_layers.0.0.weight'])


def test_load_model_weights_mmpretrain_classifier_matches_timm_logits(tmp_path, tiny_timm, x):
    """A timm file into an mmpretrain ImageClassifier: backbone + norm3 + head.fc == timm logits."""
    classifier = mmpretrain_classifier(TINY, num_classes=10)
    path = _write(tmp_path, 'model.safetensors', tiny_timm.state_dict())
    assert not W.is_mmengine_model_checkpoint(path)
    report = W.load_model_weights(classifier, path)
    assert sorted(report.head_loaded) == ['head.fc.bias', 'head.fc.weight']
    assert report.mapped == [('norm', 'norm3')]
    with torch.no_grad():
        logits = classifier(x, mode='tensor')
        assert rel_err(logits, tiny_timm(x)) <= 1e-5
    # the whole-model mmengine checkpoint of that classifier is recognised and loads strictly
    whole = tmp_path / 'epoch_1.pth'
    torch.save({'meta': {}, 'state_dict': classifier.state_dict()}, whole)
    assert W.is_mmengine_model_checkpoint(str(whole))
    report = W.load_model_weights(classifier, str(whole))
    assert report.format == 'mmengine whole model'
    # a head of the wrong size names the config fix
    small = mmpretrain_classifier(TINY, num_classes=5)
    with pytest.raises(ValueError, match='set head.num_classes=10'):
        W.load_model_weights(small, path)


@pytest.mark.parametrize('library', ['mmseg', 'mmpretrain'])
def test_init_cfg_pretrained_in_mmseg_and_mmpretrain_models(library, tmp_path, tiny_timm, x):
    """Backbone init_cfg with mmengine's prefix='backbone.' (mmseg) / a classification file
    whose final norm becomes norm3 (mmpretrain)."""
    pytest.importorskip(library)
    import importlib

    from mmengine.registry import DefaultScope
    MODELS = importlib.import_module(f'{library}.registry').MODELS
    source = official_state_dict(tiny_timm)
    if library == 'mmseg':
        path = _write(tmp_path, 'seg.pth', {'state_dict': {'backbone.' + k: v for k, v in source.items()
                                                           if not k.startswith(('head.', 'norm.'))}})
        cfg = dict(type='EncoderDecoder',
                   backbone=dict(type='FocalNet', arch=TINY, focal_windows=9, drop_path_rate=0.,
                                 init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.')),
                   decode_head=dict(type='FCNHead', in_channels=128, channels=8, num_convs=1,
                                    num_classes=3, in_index=3))
    else:
        path = _write(tmp_path, 'cls.pth', {'model': source})
        cfg = dict(type='ImageClassifier',
                   backbone=dict(type='FocalNet', arch=TINY, out_indices=(3, ), drop_path_rate=0.,
                                 init_cfg=dict(type='Pretrained', checkpoint=path)),
                   neck=dict(type='GlobalAveragePooling'),
                   head=dict(type='LinearClsHead', num_classes=10, in_channels=128))
    with DefaultScope.overwrite_default_scope(library):
        model = MODELS.build(cfg)
    model.init_weights()
    backbone = model.backbone.eval()
    with torch.no_grad():
        maps = stage_maps(backbone, x)
        ref = tiny_timm.forward_intermediates(x, intermediates_only=True)
    assert max(rel_err(a, b) for a, b in zip(maps, ref)) <= 1e-5
    if library == 'mmpretrain':
        assert torch.equal(backbone.norm3.weight, source['norm.weight'])
