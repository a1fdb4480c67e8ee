"""Gate/modulator extraction through forward hooks: exact values, image alignment, no residue."""
import pytest
import torch
import torch.nn.functional as F

from focalnet_mm import FocalNet
from focalnet_mm.registry import HOOK_REGISTERED_IN
from focalnet_mm.visualization import (
    FocalModulationVisHook,
    extract_modulation_maps,
    resolve_block,
    token_maps,
)


def small_focalnet(**kwargs):
    torch.manual_seed(0)
    kwargs.setdefault('focal_windows', 3)
    return FocalNet('tiny_lrf', embed_dim=16, depths=[1, 2, 1, 1], drop_path_rate=0., **kwargs)


def reference_gates_and_modulator(modulation, x):
    """The official focal modulation written out step by step (x: B, H, W, C)."""
    dim, levels = modulation.dim, modulation.focal_level
    y = modulation.f(x).permute(0, 3, 1, 2)
    ctx, gates = y[:, dim:2 * dim], y[:, 2 * dim:]
    ctx_all = 0
    for level in range(levels):
        ctx = F.gelu(modulation.focal_layers[level][0](ctx))
        ctx_all = ctx_all + ctx * gates[:, level:level + 1]
    ctx_all = ctx_all + F.gelu(ctx.mean((2, 3), keepdim=True)) * gates[:, levels:]
    return gates[0], modulation.h(ctx_all).norm(dim=1)[0]


def test_token_maps_equal_the_official_computation_at_the_chosen_block():
    backbone = small_focalnet()
    modulation = backbone.layers[1].blocks[1].modulation
    seen = []
    handle = modulation.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    image = torch.randn(3, 50, 70)
    gates, modulator = token_maps(backbone, image, stage=1, block=1)
    handle.remove()
    with torch.no_grad():
        ref_gates, ref_modulator = reference_gates_and_modulator(modulation, seen[0])
    # stage 1 (stride 8): 50x70 -> pad to 52x72 -> 13x18 tokens -> pad to even 14x18 -> 7x9
    assert gates.shape == (4, 7, 9) and modulator.shape == (7, 9)
    torch.testing.assert_close(gates, ref_gates, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(modulator, ref_modulator, rtol=1e-5, atol=1e-5)
    assert modulator.min() >= 0 and gates.std() > 1e-3


def test_maps_are_aligned_to_the_image_top_left_and_cropped():
    backbone = small_focalnet()
    image = torch.randn(3, 50, 70)
    maps = extract_modulation_maps(backbone, image, stage=1, block=-1)
    assert (maps.stage, maps.block) == (1, 1)
    assert maps.gates.shape == (4, 50, 70) and maps.modulator.shape == (50, 70)
    assert maps.kernel_sizes == [3, 5, 7]
    assert maps.titles == ['gate level 1 (3x3)', 'gate level 2 (5x5)', 'gate level 3 (7x7)',
                           'gate global', 'modulator |h(ctx)|']
    gates, modulator = token_maps(backbone, image, 1, 1)
    # 7x9 tokens of 8 px cover 56x72 from the top-left corner; the image is the first 50x70
    expected = F.interpolate(gates[None], size=(56, 72), mode='bilinear', align_corners=False)
    torch.testing.assert_close(maps.gates, expected[0, :, :50, :70])
    # each token's 8x8 cell, away from borders, averages close to the token value
    cell = maps.modulator[8:16, 16:24].mean()
    assert abs(cell - modulator[1, 2]) < 0.25 * (modulator.max() - modulator.min())


def test_hooks_are_removed_and_train_mode_restored():
    backbone = small_focalnet().train()
    modulation = backbone.layers[2].blocks[0].modulation
    extract_modulation_maps(backbone, torch.randn(3, 32, 32), stage=2, block=0)
    assert backbone.training and modulation.training
    assert not modulation._forward_hooks
    assert not any(m._forward_hooks for m in backbone.modules())
    # no tensors were left on the module either
    assert set(vars(modulation)) == set(vars(small_focalnet().layers[2].blocks[0].modulation))


def test_isotropic_model_defaults_to_its_only_stage():
    backbone = FocalNet('tiny_iso', depths=[2], embed_dim=32, drop_path_rate=0., out_indices=(0,))
    assert resolve_block(backbone, None, -1) == (0, 1)
    maps = extract_modulation_maps(backbone, torch.randn(3, 40, 56))
    assert maps.modulator.shape == (40, 56) and maps.gates.shape[0] == backbone.focal_levels[0] + 1


@pytest.mark.parametrize('stage, block, argument', [(4, 0, 'stage=4'), (1, 2, 'block=2')])
def test_out_of_range_block_names_the_argument(stage, block, argument):
    with pytest.raises(ValueError, match=argument):
        resolve_block(small_focalnet(), stage, block)


def test_hook_is_registered_in_every_installed_library():
    from mmengine.registry import HOOKS
    assert HOOKS.get('FocalModulationVisHook') is FocalModulationVisHook
    for library in ('mmdet', 'mmseg', 'mmpretrain'):
        assert library in HOOK_REGISTERED_IN
        registry = __import__(f'{library}.registry', fromlist=['HOOKS']).HOOKS
        assert registry.module_dict['FocalModulationVisHook'] is FocalModulationVisHook
