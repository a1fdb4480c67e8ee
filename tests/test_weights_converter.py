"""tools/model_converters/focalnet2mm.py: timm / HF / official -> clean official-layout files."""
import hashlib
import os.path as osp
import re
import sys

import pytest
import torch
from safetensors.torch import save_file

import focalnet_mm  # noqa: F401
from focalnet_mm import FocalNet
from focalnet_mm import weights as W

from conftest import load_tool, perturb_

TINY = dict(embed_dim=16, depths=(1, 1, 2, 1), focal_levels=2, focal_windows=3)


@pytest.fixture(autouse=True)
def seeded():
    """Deterministic random weights: every tolerance holds for a known draw, not by luck."""
    torch.manual_seed(0)


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/model_converters/focalnet2mm.py')


def sha_suffix_ok(path):
    match = re.search(r'-([0-9a-f]{8})\.pth$', path)
    with open(path, 'rb') as f:
        return match is not None and hashlib.sha256(f.read()).hexdigest()[:8] == match.group(1)


def test_timm_post_norm_file_converts_and_verifies(tool, tmp_path):
    timm = pytest.importorskip('timm')
    source = perturb_(timm.models.focalnet.FocalNet(
        embed_dim=16, depths=(1, 1, 2, 1), focal_levels=(3, ) * 4, use_overlap_down=True,
        use_post_norm=True, layerscale_value=1e-4, num_classes=5, drop_path_rate=0.))
    src = tmp_path / 'model.safetensors'
    save_file(source.state_dict(), str(src))
    out, errors = tool.convert(tool.parse_args([
        str(src), str(tmp_path / 'focalnet_custom.pth'), '--verify', '--input-size', '64',
        '--tolerance', '1e-5']))
    assert osp.basename(out).startswith('focalnet_custom-') and sha_suffix_ok(out)
    assert len(errors) == 4 and max(errors) <= 1e-5
    written = torch.load(out, weights_only=True)
    assert set(written) == {'model', 'config', 'meta'}
    assert written['config']['MODEL']['FOCAL']['USE_POSTLN'] is True  # learnt from timm's norm1_post
    assert 'stem.proj.weight' not in written['model'] and written['model']['head.weight'].shape == (5, 128)
    # the invisible flag travels with the file: a pre-LN model is refused
    model = FocalNet(arch=dict(TINY, focal_levels=3, use_conv_embed=True, use_layerscale=True))
    with pytest.raises(ValueError, match=r"use_postln=True \(from its training config"):
        W.load_pretrained(model, out)


def test_hf_folder_converts_and_verifies(tool, tmp_path):
    transformers = pytest.importorskip('transformers')
    config = transformers.FocalNetConfig(embed_dim=16, depths=[1, 1, 2, 1], use_layerscale=True,
                                         num_labels=3, drop_path_rate=0.)
    hf = perturb_(transformers.FocalNetForImageClassification(config))
    folder = tmp_path / 'hf'
    folder.mkdir()
    torch.save(hf.state_dict(), folder / 'pytorch_model.bin')
    config.to_json_file(str(folder / 'config.json'))
    out, errors = tool.convert(tool.parse_args(
        [str(folder), str(tmp_path / 'out.pth'), '--verify', '--input-size', '64']))
    assert len(errors) == 4 and max(errors) <= 1e-5
    config_written = torch.load(out, weights_only=True)['config']['MODEL']['FOCAL']
    assert config_written['USE_POSTLN'] is False and config_written['USE_LAYERSCALE'] is True


def test_official_to_mmdet_and_mmpretrain_layouts(tool, tmp_path):
    source = perturb_(FocalNet(arch=TINY, out_indices=(3, )))
    official = {k.replace('norm3.', 'norm.'): v for k, v in source.state_dict().items()}
    official['head.weight'], official['head.bias'] = torch.randn(4, 128), torch.randn(4)
    src = tmp_path / 'official.pth'
    torch.save({'model': official}, src)

    det = tool.main([str(src), str(tmp_path / 'det.pth'), '--prefix', 'backbone.'])
    written = torch.load(det, weights_only=True)
    assert set(written) == {'meta', 'state_dict', 'config'}
    assert all(k.startswith('backbone.') for k in written['state_dict'])
    assert not any(k.startswith(('backbone.norm', 'backbone.head', 'head')) for k in written['state_dict'])
    assert not W.is_mmengine_model_checkpoint(det)
    model = FocalNet(arch=TINY, focal_windows=9)
    report = W.load_pretrained(model, det)
    assert report.prefix == 'backbone.' and report.resized

    cls = tool.main([str(src), str(tmp_path / 'cls.pth'), '--prefix', 'backbone.', '--keep-head'])
    state = torch.load(cls, weights_only=True)['state_dict']
    assert torch.equal(state['backbone.norm3.weight'], official['norm.weight'])
    assert torch.equal(state['head.fc.weight'], official['head.weight'])
    assert W.is_mmengine_model_checkpoint(cls)


def test_verify_official_source_against_timm(tool, tmp_path):
    pytest.importorskip('timm')
    source = perturb_(FocalNet(arch=TINY, out_indices=(3, )))
    official = {k.replace('norm3.', 'norm.'): v for k, v in source.state_dict().items()}
    src = tmp_path / 'official.pth'
    torch.save({'model': official}, src)
    out, errors = tool.convert(tool.parse_args(
        [str(src), str(tmp_path / 'o.pth'), '--verify', '--input-size', '64', '--no-hash']))
    assert out == str(tmp_path / 'o.pth') and osp.exists(out)
    assert len(errors) == 4 and max(errors) <= 1e-5
    # a source that does not reproduce is caught: corrupt the written file's mlp weights
    broken = torch.load(out, weights_only=True)
    broken['model']['layers.2.blocks.0.mlp.fc1.weight'] += 0.01
    torch.save(broken, tmp_path / 'broken.pth')
    converted = W.convert_checkpoint(torch.load(src, weights_only=True))
    with pytest.raises(SystemExit, match='--verify failed'):
        tool.verify(W.unwrap_checkpoint(torch.load(src, weights_only=True))[0], converted,
                    str(tmp_path / 'broken.pth'), W.describe_state_dict(converted.state_dict), None, 64, 1e-4)


def test_trust_pickle_turns_a_yacs_config_into_a_safe_file(tool, tmp_path, monkeypatch,
                                                           yacs_cfg_node):
    CfgNode = yacs_cfg_node
    sd = perturb_(FocalNet(arch=TINY)).state_dict()
    src = tmp_path / 'ckpt_epoch_299.pth'
    config = CfgNode(MODEL=CfgNode(FOCAL=CfgNode(USE_POSTLN=True, NORMALIZE_MODULATOR=False)))
    torch.save({'model': sd, 'config': config, 'epoch': 299}, src)
    with pytest.raises(SystemExit, match='--trust-pickle'):
        tool.main([str(src), str(tmp_path / 'x.pth')])
    out = tool.main([str(src), str(tmp_path / 'clean.pth'), '--trust-pickle'])
    monkeypatch.delitem(sys.modules, 'yacs.config')
    written = torch.load(out, weights_only=True)  # plain containers only now
    assert type(written['config']) is dict and written['config']['MODEL']['FOCAL']['USE_POSTLN'] is True
    with pytest.raises(ValueError, match='set use_postln=True'):
        W.load_pretrained(FocalNet(arch=TINY), out)
    W.load_pretrained(FocalNet(arch=TINY, use_postln=True), out)


def test_cli_errors_name_the_fix(tool, tmp_path):
    with pytest.raises(SystemExit, match='--keep-head only applies with --prefix'):
        tool.main(['a.pth', 'b.pth', '--keep-head'])
    torch.save({'model': FocalNet(arch=TINY).state_dict()}, tmp_path / 's.pth')
    with pytest.raises(SystemExit, match=r'--arch tiny_srf does not match the tensors'):
        tool.main([str(tmp_path / 's.pth'), str(tmp_path / 'd.pth'), '--arch', 'tiny_srf'])
