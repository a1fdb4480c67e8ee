"""FocalNet-L/XL/H DINO: configs against the FocalNet-DINO / detrex recipes, the FocalNet-DINO ->
mmdet converter on checkpoints with the exact FocalNet-DINO layout, a train and a test run of the
L config at small size on coco_mini, the FSDP option on two CPU processes, per-stage with_cp.

The synthetic checkpoints follow IDEA-Research DINO's module tree as FocalNet-DINO builds it
(models/dino/dino.py, deformable_transformer.py, backbone.py; FocalNet-DINO's focal.py for
``backbone.0.*``), written out below from that code, not from mmdet's model.
"""
import copy
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

import focalnet_mm  # noqa: F401
from focalnet_mm import FocalNet
from focalnet_mm.archs import resolve_arch

from conftest import REPO_ROOT, dist_train, free_port, load_tool, parsed_config, sweep
from meta_build import norm_parameter_names, on_meta, optimizer_groups

DET_DIR = osp.join(REPO_ROOT, 'configs', 'det')


CONVERTER = load_tool('tools/model_converters/focalnet_dino2mm.py', 'focalnet_dino2mm')


@pytest.fixture(autouse=True)
def mmdet_scope():
    """mmdet's default scope for each test, the previous one restored after (order-independent:
    the model builders here set mmdet's scope, which must not leak into other modules)."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def config(name):
    """Read only (conftest.parsed_config)."""
    return parsed_config(osp.join(DET_DIR, f'{name}.py'))


# ------------------------------------------------------------------------------ the recipes
# name -> (FocalNet-DINO / detrex backbone, levels, windows, normalize_modulator, out_indices,
#          neck channels, feature levels, epochs, LR step epoch, drop_path, published box AP)
RECIPES = {
    'dino_focalnet_l_fl3_4scale_12e': ('large_fl3', 3, 5, False, (1, 2, 3), [384, 768, 1536], 4,
                                       12, 11, 0.2, 57.5),
    'dino_focalnet_l_fl3_4scale_36e': ('large_fl3', 3, 5, False, (1, 2, 3), [384, 768, 1536], 4,
                                       36, 30, 0.2, 58.3),
    'dino_focalnet_l_fl4_4scale_12e': ('large_fl4', 4, 3, True, (1, 2, 3), [384, 768, 1536], 4,
                                       12, 11, 0.2, 58.0),
    'dino_focalnet_l_fl4_5scale_12e': ('large_fl4', 4, 3, True, (0, 1, 2, 3),
                                       [192, 384, 768, 1536], 5, 12, 11, 0.2, 58.5),
    'dino_focalnet_l_fl4_5scale_36e': ('large_fl4', 4, 3, True, (0, 1, 2, 3),
                                       [192, 384, 768, 1536], 5, 36, 30, 0.4, None),
    'dino_focalnet_l_fl4_5scale_o365_coco': ('large_fl4', 4, 3, True, (0, 1, 2, 3),
                                             [192, 384, 768, 1536], 5, 12, 11, 0.2, 63.5),
    'dino_focalnet_xl_fl4_5scale_12e': ('xlarge_fl4', 4, 3, True, (0, 1, 2, 3),
                                        [256, 512, 1024, 2048], 5, 12, 11, 0.2, None),
    'dino_focalnet_h_fl4_5scale_12e': ('huge_fl4', 4, 3, False, (0, 1, 2, 3),
                                       [352, 704, 1408, 2816], 5, 12, 11, 0.2, None),
    'dino_focalnet_h_fl4_5scale_12e_fsdp': ('huge_fl4', 4, 3, False, (0, 1, 2, 3),
                                            [352, 704, 1408, 2816], 5, 12, 11, 0.2, None),
}
DINO_CONFIGS = sorted(osp.splitext(osp.basename(p))[0]
                      for p in glob.glob(osp.join(DET_DIR, 'dino_*.py')))
#: the architectures (12e/36e and the o365/FSDP variants share them)
ARCHITECTURES = ['dino_focalnet_l_fl3_4scale_12e', 'dino_focalnet_l_fl4_4scale_12e',
                 'dino_focalnet_l_fl4_5scale_12e', 'dino_focalnet_xl_fl4_5scale_12e',
                 'dino_focalnet_h_fl4_5scale_12e']
#: the quick loop's: L fl3 (4 scales, the with_cp default) and H fl4 (5 scales, post-LN in
#: modulation); the others run in the whole suite
QUICK = ('dino_focalnet_l_fl3_4scale_12e', 'dino_focalnet_h_fl4_5scale_12e')
#: parameters of the whole detector, counted on these configs. No count was published for
#: FocalNet DINO; the backbone part is checked against timm's independent FocalNet below.
PARAMS = {
    'dino_focalnet_l_fl3_4scale_12e': 228_352_428,
    'dino_focalnet_l_fl4_4scale_12e': 228_532_932,
    'dino_focalnet_l_fl4_5scale_12e': 228_879_556,
    'dino_focalnet_xl_fl4_5scale_12e': 388_835_396,
    'dino_focalnet_h_fl4_5scale_12e': 713_161_732,
}


def test_every_dino_config_has_a_recipe_row():
    assert DINO_CONFIGS == sorted(RECIPES)


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_recipe_field_by_field(name):
    arch, levels, window, normalize, out_indices, channels, num_levels, epochs, step, drop_path, \
        box_ap = RECIPES[name]
    cfg = config(name)
    assert cfg.custom_imports == dict(imports=['focalnet_mm'], allow_failed_imports=False)
    assert cfg.model.type == 'DINO' and cfg.model.num_queries == 900
    b = cfg.model.backbone
    assert (b.type, b.arch, b.focal_levels, b.focal_windows) == (
        'FocalNet', arch, [levels] * 4, [window] * 4)
    assert b.get('normalize_modulator', arch == 'large_fl4') == normalize
    assert tuple(b.out_indices) == out_indices and b.drop_path_rate == drop_path
    size = arch.split('_')[0]
    if name.endswith('o365_coco'):
        assert b.init_cfg is None  # the whole model comes from the converted checkpoint
        assert cfg.model.test_cfg.max_per_img == 600  # detrex's o365 evaluation: top-600, 1200/1999
        assert cfg.test_dataloader.dataset.pipeline[1].scale == (1999, 1200)
    else:
        assert b.init_cfg == dict(type='Pretrained', checkpoint=f'focalnet://{arch}')
    neck = cfg.model.neck
    assert (neck.type, neck.in_channels, neck.num_outs, neck.kernel_size, neck.out_channels) == (
        'ChannelMapper', channels, num_levels, 1, 256)
    assert neck.bias is True and neck.norm_cfg == dict(type='GN', num_groups=32)
    assert cfg.model.get('num_feature_levels', 4) == num_levels
    assert cfg.model.encoder.layer_cfg.self_attn_cfg.num_levels == num_levels
    assert cfg.model.decoder.layer_cfg.cross_attn_cfg.num_levels == num_levels
    # detrex optimizer: AdamW 1e-4, betas (0.9, 0.999), wd 1e-4, backbone x0.1, clip 0.1
    optim = cfg.optim_wrapper
    assert optim.optimizer == dict(type='AdamW', lr=1e-4, weight_decay=1e-4)
    assert optim.clip_grad == dict(max_norm=0.1, norm_type=2)
    assert optim.type == ('FiniteFSDPOptimWrapper' if name.endswith('fsdp') else 'FiniteOptimWrapper')
    # schedule: x0.1 once, after `step` of `epochs` epochs (detrex default_coco_scheduler)
    assert cfg.train_cfg.max_epochs == epochs
    assert [dict(s) for s in cfg.param_scheduler] == [dict(
        type='MultiStepLR', begin=0, end=epochs, by_epoch=True, milestones=[step], gamma=0.1)] or \
        [{k: v for k, v in s.items() if k != '_scope_'} for s in cfg.param_scheduler] == [dict(
            type='MultiStepLR', begin=0, end=epochs, by_epoch=True, milestones=[step], gamma=0.1)]
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    # the published number sits in the header; unofficial models say so
    with open(osp.join(DET_DIR, f'{name}.py')) as f:
        header = ''.join(line for line in f if line.startswith('#'))
    if box_ap is not None:
        assert f'{box_ap} box AP' in header
    if size in ('xlarge', 'huge'):
        assert 'NOT OFFICIAL' in header
    if name.endswith('fsdp'):
        assert cfg.runner_type == 'SkipBadSamplesFlexibleRunner' and cfg.strategy.type == 'FSDPStrategy'


_MODELS = {}


def meta_model(name):
    if name not in _MODELS:
        _MODELS[name] = CONVERTER.build_meta_model(osp.join(DET_DIR, f'{name}.py'))
    return _MODELS[name]


@pytest.mark.parametrize('name', [
    # H has every kind of norm layer L has, and the modulation's post-LN (torch's optimizer checks
    # each new param group against all earlier ones: ~1.5 s a DINO on a CPU)
    pytest.param('dino_focalnet_l_fl3_4scale_12e', marks=pytest.mark.slow),
    'dino_focalnet_h_fl4_5scale_12e'])
def test_optimizer_groups_follow_detrex(name):
    """Backbone lr x0.1; no weight decay on any norm layer (detrex weight_decay_norm=0), backbone
    LayerNorms included; weight decay 1e-4 elsewhere."""
    cfg, _ = meta_model(name)
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    torch.manual_seed(0)
    with torch.device('meta'):
        model = MODELS.build(copy.deepcopy(cfg.model))
    norm_params = norm_parameter_names(model)
    for pname, g in optimizer_groups(model, cfg.optim_wrapper).items():
        backbone = pname.startswith('backbone.')
        assert g['lr'] == pytest.approx(1e-5 if backbone else 1e-4), pname
        assert g['weight_decay'] == pytest.approx(0.0 if pname in norm_params else 1e-4), pname


# ------------------------------------------------------------------------------ parameters
def num_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('name', sweep(ARCHITECTURES, QUICK))
def test_param_count_and_backbone_equals_timm(name):
    """Whole detector: our count (no published one); backbone: timm's FocalNet of the same preset
    (an independent implementation) minus its classifier norm/head plus our output norms."""
    import timm
    cfg, model = meta_model(name)
    assert num_params(model) == PARAMS[name]
    arch = cfg.model.backbone.arch
    with on_meta():
        reference = timm.create_model(f'focalnet_{arch}', pretrained=False, num_classes=0)
    final_norm = sum(p.numel() for p in reference.norm.parameters())
    out_norms = sum(2 * model.backbone.num_features[i] for i in model.backbone.out_indices)
    assert num_params(model.backbone) == num_params(reference) - final_norm + out_norms


# ------------------------------------------------------------------------------ the converter
with open(osp.join(osp.dirname(__file__), 'data', 'focalnet_dino_backbone_keys.json')) as f:
    DINO_BACKBONE_KEYS = json.load(f)


def focalnet_dino_backbone_shapes(backbone_kwargs, return_interm_indices):
    """{key: shape} of the backbone part of a FocalNet-DINO checkpoint, expanded from the key
    layout written down from its code (tests/data/focalnet_dino_backbone_keys.json), not from
    our FocalNet: the preset gives only the sizes and flags."""
    arch = resolve_arch(**backbone_kwargs)
    layout, shapes = DINO_BACKBONE_KEYS, OrderedDict()
    per_stage = lambda value, i: value[i] if isinstance(value, (list, tuple)) else value  # noqa: E731
    conv = arch['use_conv_embed']
    sizes = dict(K_stem=7 if conv else arch['patch_size'], K_down=3 if conv else 2)

    def add(group, **names):
        for key, dims in layout[group].items():
            shape = tuple(eval(d, {'__builtins__': {}}, {**sizes, **names}) for d in dims)
            shapes[layout['prefix'] + key.format(**names)] = shape

    add('stem', C=arch['embed_dim'])
    for i, depth in enumerate(arch['depths']):
        C, L, W = arch['embed_dim'] * 2 ** i, per_stage(arch['focal_levels'], i), \
            per_stage(arch['focal_windows'], i)
        for j in range(depth):
            add('block', i=i, j=j, C=C, L=L)
            for level in range(L):
                add('focal_level', i=i, j=j, l=level, C=C, W=W)
            for flag in ('use_layerscale', 'use_postln_in_modulation'):
                if arch[flag]:
                    add(flag, i=i, j=j, C=C)
        if i in layout['downsample_after_stages']:
            add('downsample', i=i, C=C)
    for i in return_interm_indices:
        add('out_norm', i=i, C=arch['embed_dim'] * 2 ** i)
    return shapes


def focalnet_dino_state_dict(backbone_kwargs, return_interm_indices, num_feature_levels,
                             enc_layers=6, dec_layers=6, num_queries=900, hidden=256, ffn=2048,
                             heads=8, points=4, num_classes=91, dn_labelbook_size=91, fill=None):
    """The tensors of a FocalNet-DINO checkpoint ('model'), keys and shapes as its code creates them.

    ``fill(index, shape)`` makes each tensor; the default is a constant per key, expanded (no
    memory), so real-size L/XL/H layouts cost nothing.
    """
    fill = fill or (lambda i, shape: torch.full((), float(i)).expand(shape))
    # backbone.0 = FocalNet (Joiner[0]): the key layout of the FocalNet-DINO code, from the fixture
    shapes = focalnet_dino_backbone_shapes(backbone_kwargs, return_interm_indices)
    embed_dim = resolve_arch(**backbone_kwargs)['embed_dim']
    channels = [embed_dim * 2 ** i for i in return_interm_indices]
    # transformer (DeformableTransformer, two_stage_type 'standard', embed_init_tgt)
    shapes['transformer.level_embed'] = (num_feature_levels, hidden)
    msda = lambda p: {f'{p}.sampling_offsets.weight': (heads * num_feature_levels * points * 2, hidden),  # noqa
                      f'{p}.sampling_offsets.bias': (heads * num_feature_levels * points * 2, ),
                      f'{p}.attention_weights.weight': (heads * num_feature_levels * points, hidden),
                      f'{p}.attention_weights.bias': (heads * num_feature_levels * points, ),
                      f'{p}.value_proj.weight': (hidden, hidden), f'{p}.value_proj.bias': (hidden, ),
                      f'{p}.output_proj.weight': (hidden, hidden), f'{p}.output_proj.bias': (hidden, )}
    linear = lambda p, o, i: {f'{p}.weight': (o, i), f'{p}.bias': (o, )}  # noqa: E731
    norm = lambda p: {f'{p}.weight': (hidden, ), f'{p}.bias': (hidden, )}  # noqa: E731
    for i in range(enc_layers):  # DeformableTransformerEncoderLayer
        p = f'transformer.encoder.layers.{i}'
        shapes.update(msda(f'{p}.self_attn'))
        shapes.update(norm(f'{p}.norm1'))
        shapes.update(linear(f'{p}.linear1', ffn, hidden))
        shapes.update(linear(f'{p}.linear2', hidden, ffn))
        shapes.update(norm(f'{p}.norm2'))
    for i in range(dec_layers):  # DeformableTransformerDecoderLayer
        p = f'transformer.decoder.layers.{i}'
        shapes.update(msda(f'{p}.cross_attn'))
        shapes.update(norm(f'{p}.norm1'))
        shapes[f'{p}.self_attn.in_proj_weight'] = (3 * hidden, hidden)  # nn.MultiheadAttention
        shapes[f'{p}.self_attn.in_proj_bias'] = (3 * hidden, )
        shapes.update(linear(f'{p}.self_attn.out_proj', hidden, hidden))
        shapes.update(norm(f'{p}.norm2'))
        shapes.update(linear(f'{p}.linear1', ffn, hidden))
        shapes.update(linear(f'{p}.linear2', hidden, ffn))
        shapes.update(norm(f'{p}.norm3'))
    shapes.update(norm('transformer.decoder.norm'))
    shapes.update(linear('transformer.decoder.ref_point_head.layers.0', hidden, 2 * hidden))
    shapes.update(linear('transformer.decoder.ref_point_head.layers.1', hidden, hidden))
    shapes['transformer.tgt_embed.weight'] = (num_queries, hidden)
    shapes.update(linear('transformer.enc_output', hidden, hidden))
    shapes.update(norm('transformer.enc_output_norm'))
    mlp = lambda p: {**linear(f'{p}.layers.0', hidden, hidden),  # noqa: E731  MLP(h, h, 4, 3)
                     **linear(f'{p}.layers.1', hidden, hidden), **linear(f'{p}.layers.2', 4, hidden)}
    shapes.update(mlp('transformer.enc_out_bbox_embed'))
    shapes.update(linear('transformer.enc_out_class_embed', num_classes, hidden))
    # DINO: label_enc, input_proj, the shared class/box heads (one ModuleList in two places)
    shapes['label_enc.weight'] = (dn_labelbook_size + 1, hidden)
    for lvl in range(num_feature_levels):
        extra = lvl >= len(channels)
        cin = channels[-1] if lvl == len(channels) else (hidden if extra else channels[lvl])
        shapes[f'input_proj.{lvl}.0.weight'] = (hidden, cin) + ((3, 3) if extra else (1, 1))
        shapes[f'input_proj.{lvl}.0.bias'] = (hidden, )
        shapes.update(norm(f'input_proj.{lvl}.1'))
    shared = OrderedDict()
    shared.update(linear('class_embed.0', num_classes, hidden))
    shared.update(mlp('bbox_embed.0'))
    tensors = OrderedDict((k, fill(i, s)) for i, (k, s) in enumerate(shapes.items()))
    shared_tensors = {k: fill(len(tensors) + i, s) for i, (k, s) in enumerate(shared.items())}
    for i in range(dec_layers):  # dec_pred_{class,bbox}_embed_share: the same module every layer
        for k, v in shared_tensors.items():
            rest = k.split('.', 2)[2]
            head = k.split('.')[0]
            tensors[f'{head}.{i}.{rest}'] = v
            tensors[f'transformer.decoder.{head}.{i}.{rest}'] = v
    return tensors


def dino_checkpoint(name, **kwargs):
    """A FocalNet-DINO file for config ``name``: 'model' tensors and the DINO 'args' namespace."""
    import argparse
    cfg, model = meta_model(name)
    b = cfg.model.backbone
    kw = dict(arch=b.arch, focal_levels=b.focal_levels, focal_windows=b.focal_windows)
    if 'normalize_modulator' in b:
        kw['normalize_modulator'] = b.normalize_modulator
    levels = cfg.model.get('num_feature_levels', 4)
    dino_name = {'large': 'focalnet_L_384_22k', 'xlarge': 'focalnet_XL_384_22k',
                 'huge': 'focalnet_H_224_22k'}[b.arch.split('_')[0]]
    dino_name += '_fl4' if b.arch.endswith('fl4') else ''
    model_sd = focalnet_dino_state_dict(kw, list(b.out_indices), levels, **kwargs)
    args = argparse.Namespace(backbone=dino_name, num_feature_levels=levels,
                              return_interm_indices=list(b.out_indices), num_classes=91)
    return {'model': model_sd, 'args': args, 'epoch': 11}


@pytest.mark.parametrize('name', sweep(ARCHITECTURES, QUICK))
def test_real_size_checkpoint_converts_and_loads_strictly(name):
    """Every key of the FocalNet-DINO layout is placed or dropped with a reason, every model
    tensor is produced, and the model of the real config loads it strictly (meta device)."""
    cfg, model = meta_model(name)
    checkpoint = dino_checkpoint(name)
    state_dict, rows, warnings = CONVERTER.convert(checkpoint, model, cfg.model.decoder.num_layers)
    assert not warnings
    assert [r[0] for r in rows] and {r[0] for r in rows} == set(checkpoint['model'])
    assert set(state_dict) == set(model.state_dict())
    dropped = [r for r in rows if r[2] == '-']
    # the shared heads' second copies: 6 layers x (class 2 + box MLP 6) tensors
    assert len(dropped) == 6 * 8 and all('same module as' in r[3] for r in dropped)
    # a copy of the (cached) meta model takes the tensors: copying into meta tensors warns per tensor
    copy.deepcopy(model).load_state_dict(state_dict, strict=True, assign=True)


def test_keys_land_where_dino_uses_them():
    """Values follow their meaning: decoder norms by position (DINO: sa->norm2, ca->norm1,
    ffn->norm3), box MLP layers -> Linear 0/2/4, the proposal head -> the last branch, extra
    input projection -> ChannelMapper extra conv, classes 91 category ids -> 80 labels."""
    name = 'dino_focalnet_l_fl3_4scale_12e'
    cfg, model = meta_model(name)
    checkpoint = dino_checkpoint(name)
    src = checkpoint['model']
    out, _, _ = CONVERTER.convert(checkpoint, model, 6)
    same = lambda a, b: torch.equal(out[a], src[b])  # noqa: E731
    assert same('decoder.layers.2.norms.0.weight', 'transformer.decoder.layers.2.norm2.weight')
    assert same('decoder.layers.2.norms.1.weight', 'transformer.decoder.layers.2.norm1.weight')
    assert same('decoder.layers.2.norms.2.bias', 'transformer.decoder.layers.2.norm3.bias')
    assert same('encoder.layers.5.norms.1.bias', 'transformer.encoder.layers.5.norm2.bias')
    assert same('decoder.layers.0.self_attn.attn.in_proj_weight',
                'transformer.decoder.layers.0.self_attn.in_proj_weight')
    assert same('bbox_head.reg_branches.3.4.weight', 'transformer.decoder.bbox_embed.3.layers.2.weight')
    assert same('bbox_head.reg_branches.6.2.bias', 'transformer.enc_out_bbox_embed.layers.1.bias')
    assert same('neck.extra_convs.0.conv.weight', 'input_proj.3.0.weight')
    assert same('neck.convs.2.gn.bias', 'input_proj.2.1.bias')
    assert same('memory_trans_fc.weight', 'transformer.enc_output.weight')
    assert same('query_embedding.weight', 'transformer.tgt_embed.weight')
    assert same('backbone.norm3.weight', 'backbone.0.norm3.weight')
    # classes: row c of a DINO classifier is COCO category id c
    ids = torch.arange(91, dtype=torch.float32)[:, None].expand(91, 256)
    checkpoint['model'] = dict(src, **{f'class_embed.{i}.weight': ids for i in range(6)},
                               **{f'transformer.decoder.class_embed.{i}.weight': ids for i in range(6)},
                               **{'label_enc.weight': torch.arange(92.)[:, None].expand(92, 256)})
    out, _, _ = CONVERTER.convert(checkpoint, model, 6)
    labels = out['bbox_head.cls_branches.0.weight'][:, 0]
    assert labels.tolist() == [float(c) for c in CONVERTER.COCO_CATEGORY_IDS]
    assert labels[0] == 1 and labels[-1] == 90 and len(labels) == 80  # person .. toothbrush
    assert out['dn_query_generator.label_embedding.weight'][:, 0].tolist() == labels.tolist()


def test_refusals_name_the_fix():
    name = 'dino_focalnet_l_fl4_5scale_12e'
    cfg, model = meta_model(name)
    # a fl3 file into the fl4 model: the DINO args name refuses it (normalize_modulator) ...
    fl3 = dino_checkpoint('dino_focalnet_l_fl3_4scale_12e')
    with pytest.raises(ValueError, match='normalize_modulator=False'):
        CONVERTER.convert(fl3, meta_model('dino_focalnet_l_fl4_4scale_12e')[1], 6)
    # ... and without args the tensors do: no level expansion / kernel resizing for a detector
    del fl3['args']
    with pytest.raises(ValueError, match=r'focal_levels=\[3, 3, 3, 3\].*fl3 / fl4'):
        CONVERTER.convert(fl3, meta_model('dino_focalnet_l_fl4_4scale_12e')[1], 6)
    # normalize_modulator is invisible in the tensors; the DINO args name says what it was
    checkpoint = dino_checkpoint(name)
    checkpoint['args'].backbone = 'focalnet_L_384_22k'  # trained without normalize_modulator
    with pytest.raises(ValueError, match='normalize_modulator=False'):
        CONVERTER.convert(checkpoint, model, 6)
    # a 4-scale file into a 5-scale model
    four = dino_checkpoint('dino_focalnet_l_fl4_4scale_12e')
    with pytest.raises(ValueError, match='4-scale'):
        CONVERTER.convert(four, model, 6)
    # unknown DINO options
    checkpoint = dino_checkpoint(name)
    checkpoint['model']['transformer.two_stage_wh_embedding.weight'] = torch.zeros(1, 256)
    with pytest.raises(ValueError, match='no place'):
        CONVERTER.convert(checkpoint, model, 6)
    # more queries than the config
    checkpoint = dino_checkpoint(name, num_queries=300)
    with pytest.raises(ValueError, match='num_queries=300'):
        CONVERTER.convert(checkpoint, model, 6)


# ------------------------------------------------------------------------------ runs at small size
SMALL_BACKBONE = dict(embed_dim=32, depths=(1, 1, 2, 1))  # every flag of the preset kept


def write_small_config(tmp_path, coco_mini, base='dino_focalnet_l_fl3_4scale_12e', extra=''):
    """The L config with a narrow/shallow backbone, 1 encoder/decoder layer, 30 queries, 160 px
    images, on coco_mini (train = test = its 6 images), iteration-based."""
    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    if not (root / 'images').exists():
        os.symlink(osp.join(coco_mini, 'annotations.json'), root / 'annotations' / 'mini.json')
        os.symlink(osp.join(coco_mini, 'images'), root / 'images')
    with open(osp.join(coco_mini, 'annotations.json')) as f:
        classes = tuple(c['name'] for c in sorted(json.load(f)['categories'], key=lambda c: c['id']))
    base_cfg = config(base)
    channels = [SMALL_BACKBONE['embed_dim'] * 2**i for i in base_cfg.model.backbone.out_indices]
    path = tmp_path / f'{base}_small.py'
    path.write_text(f'''
_base_ = {osp.join(DET_DIR, base + '.py')!r}
data_root = {str(root) + '/'!r}
model = dict(
    num_queries=30,
    backbone=dict(embed_dim={SMALL_BACKBONE['embed_dim']}, depths={SMALL_BACKBONE['depths']},
                  init_cfg=None),
    neck=dict(in_channels={channels}),
    encoder=dict(num_layers=1, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=64))),
    decoder=dict(num_layers=1, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=64))),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=10)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
dataset = dict(data_root=data_root, metainfo=dict(classes={classes!r}), ann_file='annotations/mini.json',
               data_prefix=dict(img='images/'))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        sampler=dict(type='InfiniteSampler', shuffle=False),
                        dataset=dict(**dataset, pipeline=train_pipeline))
test_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                       dataset=dict(**dataset, pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations/mini.json')
val_dataloader = None
val_cfg = None
val_evaluator = None
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=1)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=1))
log_processor = dict(by_epoch=False, window_size=1)
{extra}
''')
    return str(path)


def small_dino_checkpoint(config_path, seed=0):
    """Random weights in the FocalNet-DINO layout for the small config's architecture."""
    import argparse
    cfg = Config.fromfile(config_path)
    b, gen = cfg.model.backbone, torch.Generator().manual_seed(seed)
    kw = dict(arch=b.arch, focal_levels=b.focal_levels, focal_windows=b.focal_windows,
              embed_dim=b.embed_dim, depths=b.depths)
    tensors = focalnet_dino_state_dict(
        kw, list(b.out_indices), cfg.model.get('num_feature_levels', 4), enc_layers=1, dec_layers=1,
        num_queries=30, ffn=64,
        fill=lambda i, shape: 0.02 * torch.randn(shape, generator=gen))
    return {'model': tensors, 'args': argparse.Namespace(backbone='focalnet_L_384_22k')}


@pytest.mark.slow
def test_small_l_config_trains_one_iteration_on_coco_mini(tmp_path, coco_mini):
    config = write_small_config(tmp_path, coco_mini)
    train = load_tool('tools/train.py', 'focalnet_train_dino')
    runner = train.main([config, '--work-dir', str(tmp_path / 'work')])
    assert runner.iter == 1
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    losses = dict(re.findall(r'\b(loss|loss_cls|loss_bbox|loss_iou|dn_loss_cls|enc_loss_cls): ([\d.]+)', log))
    assert set(losses) == {'loss', 'loss_cls', 'loss_bbox', 'loss_iou', 'dn_loss_cls', 'enc_loss_cls'}
    assert all(0 < float(v) < 1e3 for v in losses.values()), losses
    assert 'grad_norm' in log
    backbone = runner.model.backbone
    assert backbone.arch_settings['use_postln'] and backbone.arch_settings['use_conv_embed']
    assert all(stage.with_cp for stage in backbone.layers)  # the config's activation checkpointing


@pytest.mark.slow
def test_converted_release_layout_evaluates_with_tools_test(tmp_path, coco_mini):
    """FocalNet-DINO file -> converter CLI (strict load into the config's model) -> tools/test.py
    gives COCO metrics; the raw file given to tools/test.py is refused with the converter named."""
    config = write_small_config(tmp_path, coco_mini)
    src = tmp_path / 'focalnet_dino.pth'
    torch.save(small_dino_checkpoint(config), src)
    out = CONVERTER.main([str(src), str(tmp_path / 'converted.pth'), '--config', config,
                          '--report', str(tmp_path / 'map.tsv')])
    assert re.search(r'converted-[0-9a-f]{8}\.pth$', out)
    rows = [line.split('\t') for line in open(tmp_path / 'map.tsv').read().splitlines()[1:]]
    assert len(rows) == len(torch.load(src, weights_only=False)['model'])
    assert all(r[2] != '-' or r[3].startswith('dropped: ') for r in rows)
    test = load_tool('tools/test.py', 'focalnet_test_dino')
    metrics = test.main([config, out, '--work-dir', str(tmp_path / 'work')])
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50'):
        assert 0.0 <= metrics[key] <= 1.0, metrics
    # the converted weights are what the model evaluated with
    saved = torch.load(out, map_location='cpu', weights_only=False)['state_dict']
    source = torch.load(src, weights_only=False)['model']
    torch.testing.assert_close(saved['decoder.layers.0.norms.0.weight'],
                               source['transformer.decoder.layers.0.norm2.weight'])
    with pytest.raises(SystemExit, match='focalnet_dino2mm.py'):
        test.main([config, str(src), '--work-dir', str(tmp_path / 'work2')])


@pytest.mark.slow
def test_fsdp_option_trains_on_two_cpu_processes(tmp_path, coco_mini):
    """The H FSDP config (at small size): tools/dist_train.sh picks mmengine's FlexibleRunner,
    FSDPStrategy shards the model over 2 gloo processes, FSDPOptimWrapper clips by the norm of
    the whole gradient (the same value on both ranks), 2 iterations, a checkpoint per rank.
    One checkpoint, after the second iteration: a save gathers and writes a shard on each rank."""
    config = write_small_config(tmp_path, coco_mini, base='dino_focalnet_h_fl4_5scale_12e_fsdp',
                                extra="""
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=2))
strategy = dict(model_wrapper=dict(auto_wrap_policy=dict(min_num_params=50_000)))
""")
    proc = dist_train([config, '2', '--work-dir', str(tmp_path / 'work')], timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert 'world size 2 (gloo)' in output, output[-3000:]
    norms = re.findall(r'Iter\(train\) \[(\d)/2\].*?grad_norm: ([\d.]+)', output)
    assert [i for i, _ in norms] == ['1', '2'], output[-3000:]
    assert all(0 < float(n) < 1e4 for _, n in norms)
    # FSDP's 'local' state dicts: one shard file per rank
    assert sorted(os.listdir(tmp_path / 'work' / 'iter_2.pth')) == ['rank0.pth', 'rank1.pth']


_CLIP_CHECK = '''
import os
import torch, torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from focalnet_mm.engine.optim import FSDPOptimWrapper
dist.init_process_group('gloo')
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
reference = [p.detach().clone() for p in model.parameters()]
fsdp = FSDP(model, device_id=torch.device('cpu'), use_orig_params=True)
wrapper = FSDPOptimWrapper(torch.optim.SGD(fsdp.parameters(), lr=1.0), clip_grad=dict(max_norm=0.5))
x = torch.randn(4, 8, generator=torch.Generator().manual_seed(dist.get_rank()))
fsdp(x).square().sum().backward()
wrapper._clip_grad()
ours = wrapper.message_hub.get_scalar('train/grad_norm').current()
# a rank may hold parameters without any local shard (grad None): it still joins the collective
after_sq = sum((p.grad.square().sum() for p in fsdp.parameters() if p.grad is not None),
               torch.zeros(()))
dist.all_reduce(after_sq)
theirs = float(fsdp.clip_grad_norm_(1e9))
row = f'RANK {dist.get_rank()} norm {ours} fsdp {theirs} clipped {float(after_sq.sqrt())}'
with open(os.path.join(os.environ['CLIP_OUT'], f'rank{dist.get_rank()}.txt'), 'w') as f:
    f.write(row)  # one file per rank: the ranks' stdout interleaves
dist.destroy_process_group()
'''


@pytest.mark.slow
def test_fsdp_optim_wrapper_clips_by_the_whole_gradient(tmp_path):
    """Two gloo processes: FSDPOptimWrapper's norm is FSDP's own clip_grad_norm_ (the norm of
    the whole gradient) on both ranks, and after clipping the whole gradient has max_norm."""
    script = tmp_path / 'clip_check.py'
    script.write_text(_CLIP_CHECK)
    # the two ranks started as torchrun starts them (its environment variables), without its
    # launcher process: what is tested is the wrapper, not the launcher (the FSDP run above
    # goes through tools/dist_train.sh)
    port, ranks = free_port(), []
    for rank in range(2):
        env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='', PYTHONPATH=REPO_ROOT,
                   CLIP_OUT=str(tmp_path), MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                   WORLD_SIZE='2', RANK=str(rank), LOCAL_RANK=str(rank))
        ranks.append(subprocess.Popen([sys.executable, str(script)], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        outputs = [proc.communicate(timeout=300)[0] for proc in ranks]
    finally:
        for proc in ranks:
            proc.kill()
    assert [proc.returncode for proc in ranks] == [0, 0], [out[-3000:] for out in outputs]
    written = ' '.join((tmp_path / f'rank{rank}.txt').read_text() for rank in (0, 1))
    rows = re.findall(r'RANK (\d) norm ([\d.]+) fsdp ([\d.]+) clipped ([\d.]+)', written)
    assert len(rows) == 2, written
    for _, ours, theirs, clipped in rows:
        # FSDP's norm is measured after our clipping: the whole gradient now has norm max_norm
        assert float(ours) > 0.5 and float(theirs) == pytest.approx(0.5, rel=1e-4)
        assert float(clipped) == pytest.approx(0.5, rel=1e-4)
    assert rows[0][1] == rows[1][1]  # the same norm (hence the same scale) on both ranks


def test_sharded_grad_norm_without_distribution_is_torchs_norm():
    from focalnet_mm.engine.optim import sharded_grad_norm
    grads = [torch.randn(3, 4), torch.randn(5), torch.zeros(0)]
    flat = torch.cat([g.flatten() for g in grads])
    assert sharded_grad_norm(grads).item() == pytest.approx(flat.norm().item(), rel=1e-6)
    assert sharded_grad_norm(grads, float('inf')).item() == pytest.approx(flat.abs().max().item())


# ------------------------------------------------------------------------------ with_cp per stage
def test_with_cp_per_stage_checkpoints_only_those_stages():
    """with_cp=(False, False, True, False): blocks of stage 2 run twice (forward + recompute in
    backward), the others once; same gradients as without checkpointing."""
    kw = dict(arch='large_fl3', embed_dim=16, depths=(1, 1, 2, 1), drop_path_rate=0.)
    torch.manual_seed(0)
    plain = FocalNet(**kw).train()
    staged = FocalNet(**kw, with_cp=[False, False, True, False]).train()
    staged.load_state_dict(plain.state_dict())
    assert [s.with_cp for s in staged.layers] == [False, False, True, False]
    calls = {}
    for i, stage in enumerate(staged.layers):
        for j, block in enumerate(stage.blocks):
            block.register_forward_pre_hook(
                lambda m, a, key=(i, j): calls.__setitem__(key, calls.get(key, 0) + 1))
    image = torch.randn(1, 3, 64, 64)
    grads = []
    for model in (plain, staged):
        model.zero_grad()
        sum(o.square().mean() for o in model(image)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert calls == {(0, 0): 1, (1, 0): 1, (2, 0): 2, (2, 1): 2, (3, 0): 1}
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize('bad', [(True, False), 'yes', [1, 0, 0, 0]])
def test_with_cp_refuses_what_is_not_one_bool_per_stage(bad):
    with pytest.raises(ValueError, match='with_cp=.*give a bool or 4 bools'):
        FocalNet(arch='tiny_srf', with_cp=bad)


def test_metafile_indexes_every_dino_config():
    import yaml
    with open(osp.join(REPO_ROOT, 'metafile.yml')) as f:
        index = yaml.safe_load(f)
    models = {m['Name']: m for m in index['Models'] if m['Name'].startswith('dino_')}
    assert sorted(models) == DINO_CONFIGS
    for name, entry in models.items():
        box_ap = RECIPES[name][-1]
        assert entry['Config'] == f'configs/det/{name}.py' and entry['In Collection'] == 'DINO FocalNet'
        assert entry['Metadata']['Epochs'] == config(name).train_cfg.max_epochs
        arch = next(a for a in ARCHITECTURES if a.split('_')[2:5] == name.split('_')[2:5])
        assert entry['Metadata']['Parameters'] == f'{PARAMS[arch] / 1e6:.1f}M'
        got = entry.get('Results', [{}])[0].get('Metrics', {}).get('box AP')
        assert got == box_ap


@pytest.mark.slow
def test_memory_estimator_counts_saved_activations(tmp_path, coco_mini, capsys):
    """tools/analysis_tools/estimate_train_memory.py on the small L config: static memory is 16
    bytes per parameter, checkpointing the backbone keeps fewer activations, and the deformable
    attention keeps what the CUDA kernel keeps (less than mmcv's PyTorch path)."""
    config = write_small_config(tmp_path, coco_mini)
    tool = load_tool('tools/analysis_tools/estimate_train_memory.py', 'estimate_train_memory')
    results = tool.main([config, '--sizes', '96', '128', '--target', '256', '256'])
    (params, static, cp_acts), (_, _, plain_acts) = results['true'], results['false']
    assert static == 16 * params and 0 < cp_acts < plain_acts
    # the result is what it prints, last (not under thousands of parameter-init log lines)
    out = capsys.readouterr()
    lines = (out.out + out.err).strip().splitlines()
    assert len(lines) < 20 and lines[-3].startswith('Estimated training peak per GPU (2 x 256x256')
    assert lines[-2].startswith('  with_cp=true: ') and lines[-1].startswith('  with_cp=false: ')
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    inputs, samples = tool.make_batch(128, 80)
    with_kernel = tool.saved_bytes(model, inputs, samples)
    storages = {}
    params_ptr = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params_ptr:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.loss(inputs, samples)
    assert with_kernel < sum(storages.values())


def test_converter_on_a_missing_or_empty_file_is_one_line(tmp_path):
    config = osp.join(REPO_ROOT, 'configs', 'det', 'dino_focalnet_l_fl4_4scale_12e.py')
    (tmp_path / 'empty.pth').write_bytes(b'')
    for name, match in (('missing.pth', r"missing\.pth' not found"), ('empty.pth', 'is empty')):
        with pytest.raises(SystemExit, match=match) as error:
            CONVERTER.main([str(tmp_path / name), str(tmp_path / 'out.pth'), '--config', config])
        assert '\n' not in str(error.value.code)
