"""FocalNet backbone behaviour: shapes, registries, freezing, checkpointing, sizes, errors, export.

Numerical equality with the official function is in test_backbone_equivalence.py; this file
checks everything a detection/segmentation user relies on around it.
"""
import warnings

import pytest
import torch

import focalnet_mm  # noqa: F401  (registers FocalNet)
from focalnet_mm.archs import ARCHS
from focalnet_mm.models import FocalNet

from meta_build import on_meta

#: a small 4-stage model that still has every piece (stem, blocks, downsample, norm{i})
SMALL = dict(embed_dim=16, depths=(1, 1, 2, 1))


def shapes(outs):
    return [tuple(o.shape[1:]) for o in outs]


# ---------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize('size, expected_hw', [
    ((32, 32), [(8, 8), (4, 4), (2, 2), (1, 1)]),
    ((31, 31), [(8, 8), (4, 4), (2, 2), (1, 1)]),
    ((112, 137), [(28, 35), (14, 18), (7, 9), (4, 5)]),  # 137 -> 140 -> 35 -> 36; 7 -> 8, 9 -> 10
])
def test_output_shapes_follow_the_padding(size, expected_hw):
    # FocalNet-T's widths; the padding is the stem's and the downsamples', whatever the depths
    model = FocalNet(arch=dict(ARCHS['tiny_srf'], depths=(1, 1, 1, 1)), drop_path_rate=0.).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert shapes(outs) == [(c, *hw) for c, hw in zip((96, 192, 384, 768), expected_hw)]


def test_conv_embed_stem_and_downsample_keep_the_same_grid():
    model = FocalNet(arch=dict(SMALL, use_conv_embed=True), drop_path_rate=0.).eval()
    assert model.patch_embed.proj.kernel_size == (7, 7) and model.patch_embed.proj.padding == (2, 2)
    assert model.layers[0].downsample.proj.kernel_size == (3, 3)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 112, 137))
    assert shapes(outs) == [(16, 28, 35), (32, 14, 18), (64, 7, 9), (128, 4, 5)]


def test_arch_dict_with_patch_size_2():
    model = FocalNet(arch=dict(embed_dim=64, depths=[3, 3, 16, 3], patch_size=2),
                     drop_path_rate=0.).eval()
    assert model.arch == 'custom' and [len(s.blocks) for s in model.layers] == [3, 3, 16, 3]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert shapes(outs) == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]


@pytest.mark.parametrize('arch, channels', [  # the wider two repeat tiny's structure: whole suite
    ('tiny_iso', 192), pytest.param('small_iso', 384, marks=pytest.mark.slow),
    pytest.param('base_iso', 768, marks=pytest.mark.slow)])
def test_isotropic_presets_have_one_stride_16_stage(arch, channels):
    model = FocalNet(arch, out_indices=(0, ), drop_path_rate=0.).eval()
    assert model.num_stages == 1 and len(model.layers[0].blocks) == 12
    assert model.layers[0].downsample is None
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 50))  # 50 -> 64
    assert shapes(outs) == [(channels, 4, 4)]


# ------------------------------------------------------------------------------------ registries
@pytest.mark.parametrize('library', ['mmdet', 'mmseg', 'mmpretrain'])
def test_registries_build_our_class(library):
    """Each library's registry, under its own default scope (another test's scope left set would
    redirect the lookup to that library's registry). Built on the meta device: only the class and
    its structure are looked at."""
    from mmengine.registry import DefaultScope
    registry = pytest.importorskip(f'{library}.registry')
    with DefaultScope.overwrite_default_scope(library), on_meta():
        model = registry.MODELS.build(dict(type='FocalNet', arch='tiny_srf'))
    assert type(model) is FocalNet
    assert model.arch_settings['focal_levels'] == 2 and model.num_features[-1] == 768


# ------------------------------------------------------------------------- freezing and norm_eval
def expected_frozen_names(model, frozen_stages):
    prefixes = ['patch_embed.'] if frozen_stages >= 0 else []
    for i in range(max(frozen_stages, 0)):
        prefixes.append(f'layers.{i}.')
        if i in model.out_indices:
            prefixes.append(f'norm{i}.')
    return {n for n, _ in model.named_parameters() if n.startswith(tuple(prefixes))}


@pytest.mark.parametrize('frozen_stages, out_indices', [
    (-1, (0, 1, 2, 3)), (0, (0, 1, 2, 3)), (1, (0, 1, 2, 3)), (2, (0, 1, 2, 3)),
    (4, (0, 1, 2, 3)), (2, (1, 3))])
def test_frozen_stages_freeze_exactly_the_documented_parameters(frozen_stages, out_indices):
    model = FocalNet(arch=SMALL, frozen_stages=frozen_stages, out_indices=out_indices,
                     drop_rate=0.1, drop_path_rate=0.1)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    expected = expected_frozen_names(model, frozen_stages)
    assert frozen == expected
    # the documented meaning in words, so the helper cannot drift with the implementation
    if frozen_stages == 1:
        assert 'layers.0.downsample.proj.weight' in frozen and 'norm0.weight' in frozen
        assert 'layers.1.blocks.0.norm1.weight' not in frozen
    if frozen_stages == 4:
        assert frozen == {n for n, _ in model.named_parameters()}

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == expected
    frozen_modules = [model.patch_embed, model.pos_drop] if frozen_stages >= 0 else []
    frozen_modules += [model.layers[i] for i in range(max(frozen_stages, 0))]
    frozen_ids = {id(m) for top in frozen_modules for m in top.modules()}
    for name, module in model.named_modules():
        if name.startswith('norm') and int(name[4:]) < frozen_stages:
            frozen_ids.add(id(module))
    for name, module in model.named_modules():
        assert module.training == (id(module) not in frozen_ids), name

    if frozen_stages < model.num_stages:  # one training step moves exactly the trainable weights
        opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.1)
        torch.manual_seed(0)
        sum(o.square().mean() for o in model(torch.randn(2, 3, 32, 32))).backward()
        opt.step()
        for name, param in model.named_parameters():
            moved = not torch.equal(param, before[name])
            assert moved == (name not in expected), name


@pytest.mark.parametrize('norm_eval', [False, True])
def test_norm_eval_keeps_every_norm_in_eval_mode(norm_eval):
    model = FocalNet(arch=SMALL, norm_eval=norm_eval, frozen_stages=0).train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    trainable_norms = [m for n, m in model.named_modules()
                       if isinstance(m, torch.nn.LayerNorm) and not n.startswith('patch_embed')]
    assert len(norms) == len(trainable_norms) + 1
    if norm_eval:
        assert not any(m.training for m in norms)
    else:
        assert all(m.training for m in trainable_norms)
    assert model.layers[0].blocks[0].mlp.training and model.layers[0].training


# ------------------------------------------------------------------------------------- with_cp
def loss_and_grads(model, image):
    weights = [torch.randn(o.shape, generator=torch.Generator().manual_seed(i))
               for i, o in enumerate(model(image))]
    model.zero_grad()
    loss = sum((o * w).sum() for o, w in zip(model(image), weights))
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_with_cp_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = FocalNet(arch=SMALL, drop_path_rate=0.).train()
    checkpointed = FocalNet(arch=SMALL, drop_path_rate=0., with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    image = torch.randn(1, 3, 37, 45)
    expected, got = loss_and_grads(plain, image), loss_and_grads(checkpointed, image)
    assert set(got) == set(expected) == {n for n, _ in plain.named_parameters()}
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-7, msg=name)


def test_with_cp_behind_a_frozen_stem_still_trains_and_recomputes_every_block():
    """The reentrant-checkpoint bug: a frozen stem gave the blocks no gradient at all."""
    model = FocalNet(arch=SMALL, drop_path_rate=0., with_cp=True, frozen_stages=0).train()
    calls = {}
    blocks = [(f'{i}.{j}', b) for i, s in enumerate(model.layers) for j, b in enumerate(s.blocks)]
    handles = [b.register_forward_pre_hook(
        lambda m, args, key=key: calls.__setitem__(key, calls.get(key, 0) + 1)) for key, b in blocks]
    try:
        sum(o.square().sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    finally:
        for handle in handles:
            handle.remove()
    for name, param in model.named_parameters():
        if name.startswith('patch_embed'):
            assert param.grad is None
        elif '.blocks.' in name:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    # every block ran twice: once forward, once recomputed in backward (it was checkpointed)
    assert calls == {key: 2 for key, _ in blocks}


# -------------------------------------------------------------------------------------- sizes
@pytest.mark.parametrize('arch, millions', [
    ('tiny_srf', 28.43), ('tiny_lrf', 28.65), ('small_srf', 49.89), ('small_lrf', 50.34),
    ('base_srf', 88.15), ('base_lrf', 88.75)])
def test_parameter_counts_match_the_official_table(arch, millions):
    with on_meta():  # only the count is looked at
        model = FocalNet(arch, out_indices=(3, ))  # norm3 has the size of the classifier's norm
    channels = model.num_features[-1]
    total = sum(p.numel() for p in model.parameters()) + 1000 * channels + 1000
    assert round(total / 1e6, 2) == millions


# ------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize('kwargs, error, fragments', [
    (dict(arch='tiny'), ValueError, ["'tiny'", 'tiny_srf', 'huge_fl4', 'base_iso', 'dict']),
    (dict(arch=dict(embed_dims=96)), ValueError, ['embed_dims', 'embed_dim']),
    (dict(focal_levels=[2, 2, 2]), ValueError, ['focal_levels', '3 entries', '4 stages']),
    (dict(focal_windows=[9, 9]), ValueError, ['focal_windows', '2 entries', '4 stages']),
    (dict(out_indices=(0, 4)), ValueError, ['out_indices', '0..3']),
    (dict(out_indices=(-1, )), ValueError, ['out_indices', '0..3']),
    (dict(arch='tiny_iso'), ValueError, ['out_indices', 'out_indices=(0,)']),
    (dict(frozen_stages=5), ValueError, ['frozen_stages=5', '-1', '4']),
    (dict(frozen_stages=-2), ValueError, ['frozen_stages=-2']),
    (dict(embed_dims=96), TypeError, ['embed_dims', 'help(focalnet_mm.FocalNet)']),
    (dict(patch_norm=False), ValueError, ['patch_norm=False']),
    (dict(with_cp=True, use_checkpoint=False), ValueError, ['with_cp', 'use_checkpoint']),
    (dict(in_channels=4, in_chans=1), ValueError, ['in_channels', 'in_chans']),
    (dict(pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth')),
     ValueError, ['pretrained', 'init_cfg']),
    (dict(pretrained=123), TypeError, ['pretrained']),
])
def test_bad_arguments_name_the_fix(kwargs, error, fragments):
    with pytest.raises(error) as info:
        FocalNet(**kwargs)
    message = str(info.value)
    assert '\n' not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_wrong_input_channels_name_the_flag():
    model = FocalNet(arch=SMALL).eval()
    with pytest.raises(ValueError, match=r'3 channels.*\(1, 1, 32, 32\).*in_channels=1'):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r'NCHW.*\(3, 32, 32\)'):
        model(torch.zeros(3, 32, 32))
    gray = FocalNet(arch=SMALL, in_chans=1, use_checkpoint=True).eval()  # official spellings
    assert gray.patch_embed.proj.in_channels == 1 and gray.with_cp
    assert shapes(gray(torch.zeros(1, 1, 32, 32)))[0] == (16, 8, 8)


def test_pretrained_shorthand_sets_init_cfg():
    model = FocalNet(arch=SMALL, pretrained='work_dirs/focalnet_tiny_srf.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='work_dirs/focalnet_tiny_srf.pth')
    assert FocalNet(arch=SMALL).init_cfg is None
    cfg = dict(type='Pretrained', checkpoint='x.pth', prefix='backbone.')
    assert FocalNet(arch=SMALL, init_cfg=cfg).init_cfg == cfg


# ------------------------------------------------------------------- export and stateless forward
def module_state(model):
    """Every attribute of every module, by identity (a forward must not set or replace any)."""
    return {name: dict(vars(m)) | {'_buffers': dict(m._buffers), '_parameters': dict(m._parameters)}
            for name, m in model.named_modules()}


def assert_same_state(before, after):
    assert before.keys() == after.keys()
    for name in before:
        assert before[name].keys() == after[name].keys(), name
        for key, value in before[name].items():
            if key in ('_buffers', '_parameters'):
                assert value.keys() == after[name][key].keys(), (name, key)
                assert all(v is after[name][key][k] for k, v in value.items()), (name, key)
            else:
                assert after[name][key] is value, (name, key)


@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_forward_stores_nothing_on_modules(mode):
    model = FocalNet(arch=dict(SMALL, use_postln=True, use_layerscale=True,
                               use_postln_in_modulation=True), drop_path_rate=0.1)
    model.train(mode == 'train')
    before = module_state(model)
    out = model(torch.randn(1, 3, 37, 45))
    if mode == 'train':
        sum(o.sum() for o in out).backward()
    assert_same_state(before, module_state(model))


def test_jit_trace_matches_eager():
    model = FocalNet(arch=SMALL, drop_path_rate=0.).eval()
    image = torch.randn(1, 3, 37, 45)  # padding at the stem and before two downsamples
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # deprecation and shape-specialisation notices
        traced = torch.jit.trace(model, image)
        for got, expected in zip(traced(image), model(image)):
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.slow  # the quick loop traces auto (train and eval) in test_impl_matrix
def test_torch_compile_matches_eager_without_graph_breaks():
    """aot_eager: inductor compiles this in ~4 minutes on the shared 2-core CPU machine. Two
    stages (a block, the downsample, a block) trace what four would, in half the time."""
    model = FocalNet(arch=dict(SMALL, depths=(1, 1)), out_indices=(0, 1), drop_path_rate=0.).eval()
    image = torch.randn(1, 3, 37, 45)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    with torch.no_grad():
        expected = model(image)
        got = compiled(image)
    assert len(got) == 2
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)
    torch._dynamo.reset()
