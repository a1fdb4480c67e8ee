"""FocalNet-L + Mask2Former: COCO panoptic / instance (mmdet) and ADE20K semantic (mmseg) configs.

Each config is checked to be its library's Swin-L recipe with only the backbone, its optimizer
keys (and, for COCO, the per-GPU batch) changed; the models are built on the meta device (225.9M
parameters, no weights allocated). Training runs use a small FocalNet (every flag of the L preset,
narrow and shallow) and a shrunken head of the same kind: one iteration on coco_mini (instance),
on camvid_mini (semantic), and on a COCO-panoptic set generated here from coco_mini's instances
plus one stuff class, which is then evaluated with mmdet's CocoPanopticMetric (PQ).
"""
import copy
import json
import os
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

import focalnet_mm  # noqa: F401

from conftest import REPO_ROOT, load_tool, parsed_config
from meta_build import norm_parameter_names, on_meta, optimizer_groups

CONFIGS = {
    'panoptic': ('configs/det/mask2former_focalnet_l_fl3_lsj_100e_coco_panoptic.py', 'mmdet',
                 'mmdet::mask2former/mask2former_swin-l-p4-w12-384-in21k_16xb1-lsj-100e_coco-panoptic.py'),
    'instance': ('configs/det/mask2former_focalnet_l_fl3_lsj_100e_coco_instance.py', 'mmdet', None),
    'semantic': ('configs/seg/mask2former_focalnet_l_fl3_640x640_160k_ade20k.py', 'mmseg',
                 'mmseg::mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py'),
}
#: parameters of the whole model, counted on the configs (no count was published): the backbone
#: is 205,566,432 of them (FocalNet-L fl3 without its classifier norm/head, with norm0..3)
PARAMS = {'panoptic': 225_900_838, 'instance': 225_887_217, 'semantic': 225_854_007}
BACKBONE_PARAMS = 205_566_432
#: the paper's numbers (targets, not reproduced here)
TARGETS = {'panoptic': '57.9 PQ', 'instance': 'not reported', 'semantic': '58.5 mIoU'}
SMALL_BACKBONE = dict(embed_dim=32, depths=(1, 1, 2, 1))  # every flag of large_fl3 kept


def load(task):
    """Read only (conftest.parsed_config)."""
    return parsed_config(osp.join(REPO_ROOT, CONFIGS[task][0]))


def library_config(name):
    """``mmdet::path`` / ``mmseg::path``: a config shipped in the installed package."""
    import importlib
    package, path = name.split('::')
    return Config.fromfile(osp.join(osp.dirname(importlib.import_module(package).__file__), '.mim',
                                    'configs', path))


def plain(value):
    """A config value as plain dicts/lists, without the ``_scope_`` keys that pkg:: bases add."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


_BUILT = {}


def built(task):
    """(config, model on the meta device), built once per config."""
    if task not in _BUILT:
        cfg = load(task)
        from mmengine.registry import MODELS
        with DefaultScope.overwrite_default_scope(CONFIGS[task][1]), on_meta():
            model = MODELS.build(copy.deepcopy(cfg.model))
        _BUILT[task] = cfg, model
    return _BUILT[task]


def num_params(module):
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------ the recipes
@pytest.mark.parametrize('task', ['panoptic', 'semantic'])
def test_config_is_the_swin_l_recipe_with_the_backbone_swapped(task):
    path, _, swin_base = CONFIGS[task]
    ours, swin = load(task), library_config(swin_base)
    assert ours.custom_imports == dict(imports=['focalnet_mm'], allow_failed_imports=False)
    model, swin_model = plain(ours.model), plain(swin.model)
    assert model.pop('backbone')['type'] == 'FocalNet'
    assert swin_model.pop('backbone')['type'] == 'SwinTransformer'
    assert model == swin_model  # heads (queries, channels 192..1536), losses, preprocessing, test
    for key in ('param_scheduler', 'train_cfg', 'val_dataloader', 'test_dataloader', 'val_evaluator',
                'auto_scale_lr'):
        assert plain(ours[key]) == plain(swin[key]), key
    optim, swin_optim = plain(ours.optim_wrapper), plain(swin.optim_wrapper)
    optim.pop('paramwise_cfg'), swin_optim.pop('paramwise_cfg')
    # the same wrapper with the non-finite guard (configs/_base_/safe_training.py)
    assert (optim.pop('type'), swin_optim.pop('type')) == ('FiniteOptimWrapper', 'OptimWrapper')
    assert optim == swin_optim  # AdamW 1e-4, wd 0.05, eps 1e-8, clip 0.01
    loader, swin_loader = plain(ours.train_dataloader), plain(swin.train_dataloader)
    if task == 'panoptic':  # the base runs 16 GPUs x 1 image; 8 x 2 is the same batch of 16
        assert (swin_loader.pop('batch_size'), loader.pop('batch_size')) == (1, 2)
        assert loader.pop('num_workers') == 2
        swin_loader.pop('num_workers')
    assert loader == swin_loader  # data pipeline (LSJ 1024 / ADE 640 crops)
    assert (ours.auto_scale_lr.base_batch_size, ours.train_dataloader.batch_size) == (16, 2)


def test_instance_config_is_mmdets_own_panoptic_to_instance_diff():
    """mmdet has no Swin-L instance config: ours applies the diff of mmdet's R-50 instance config
    over its panoptic base to the FocalNet-L panoptic config; every field it touches must agree."""
    ours, panoptic = load('instance'), load('panoptic')
    r50 = library_config('mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py')
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator'):
        got, want = plain(ours[key]), plain(r50[key])
        for name in ('batch_size', 'num_workers'):  # the L recipe's loader settings stay
            got.pop(name, None), want.pop(name, None)
        if 'dataset' in want:  # mmdet's merge keeps the panoptic folder that CocoDataset never reads
            assert want['dataset']['data_prefix'].pop('seg').startswith('annotations/panoptic_')
        assert got == want, key
    assert plain(ours.model.data_preprocessor) == plain(r50.model.data_preprocessor)
    assert plain(ours.model.test_cfg) == plain(r50.model.test_cfg)
    head, r50_head = plain(ours.model.panoptic_head), plain(r50.model.panoptic_head)
    assert (head['num_things_classes'], head['num_stuff_classes'], head['loss_cls']) == (
        80, 0, r50_head['loss_cls'])
    assert head['num_queries'] == 200 and ours.train_cfg.max_iters == 737500  # Swin-L: 200, 100e
    for key in ('backbone', ):
        assert plain(ours.model[key]) == plain(panoptic.model[key])
    assert plain(ours.optim_wrapper) == plain(panoptic.optim_wrapper)


@pytest.mark.parametrize('task', sorted(CONFIGS))
def test_backbone_weights_and_header(task):
    cfg = load(task)
    b = cfg.model.backbone
    assert (b.type, b.arch, b.focal_levels, b.focal_windows, b.drop_path_rate, tuple(b.out_indices)) == (
        'FocalNet', 'large_fl3', [3] * 4, [5] * 4, 0.3, (0, 1, 2, 3))
    assert b.init_cfg == dict(type='Pretrained', checkpoint='focalnet://large_fl3')
    with open(osp.join(REPO_ROOT, CONFIGS[task][0])) as f:
        header = ''.join(line for line in f if line.startswith('#'))
    assert f'Target: {TARGETS[task]}' in header and 'NOT REPRODUCED' in header


@pytest.mark.parametrize('task', sorted(CONFIGS))
def test_model_builds_with_the_large_backbone_and_counts_its_params(task):
    import timm
    cfg, model = built(task)
    assert type(model).__name__ == ('EncoderDecoder' if task == 'semantic' else 'Mask2Former')
    backbone = model.backbone
    assert type(backbone).__name__ == 'FocalNet' and backbone.num_features == [192, 384, 768, 1536]
    assert backbone.arch_settings['use_postln'] and backbone.arch_settings['use_layerscale']
    kernels = [c[0].kernel_size[0] for c in backbone.layers[0].blocks[0].modulation.focal_layers]
    assert kernels == [5, 7, 9]
    assert num_params(model) == PARAMS[task] and num_params(backbone) == BACKBONE_PARAMS
    with on_meta():  # timm's independent FocalNet-L: minus its final norm, plus our norm0..3
        reference = timm.create_model('focalnet_large_fl3', pretrained=False, num_classes=0)
    out_norms = 2 * (192 + 384 + 768 + 1536)
    assert BACKBONE_PARAMS == num_params(reference) - num_params(reference.norm) + out_norms
    queries = 100 if task == 'semantic' else 200
    head = model.decode_head if task == 'semantic' else model.panoptic_head
    assert head.num_queries == queries


@pytest.mark.parametrize('task', ['panoptic', 'semantic'])
def test_optimizer_groups_map_the_swin_l_decay_rules(task):
    """Backbone lr x0.1; decay 0 for every norm (backbone LayerNorms included), the layer-scale
    gammas, query_embed / query_feat / level_embed; decay 0.05 elsewhere, focal kernels included."""
    cfg, model = built(task)
    norm_params = norm_parameter_names(model)
    no_decay = []
    for name, g in optimizer_groups(model, cfg.optim_wrapper).items():
        assert g['lr'] == pytest.approx(1e-5 if name.startswith('backbone.') else 1e-4), name
        exempt = name in norm_params or re.search(r'\.gamma_[12]$|query_embed|query_feat|level_embed', name)
        assert g['weight_decay'] == pytest.approx(0.0 if exempt else 0.05), name
        if 'focal_layers' in name:
            assert g['weight_decay'] == pytest.approx(0.05)
        if not g['weight_decay']:
            no_decay.append(name)
    blocks = sum(len(layer.blocks) for layer in model.backbone.layers)
    backbone = [n for n in no_decay if n.startswith('backbone.')]
    # stem norm, norm1/norm2 + gamma_1/gamma_2 per block, 3 downsample norms, norm0..3
    assert len(backbone) == 2 * (1 + 2 * blocks + 3 + 4) + 2 * blocks


def test_metafile_and_docs_give_the_papers_numbers_and_our_counts():
    import yaml
    with open(osp.join(REPO_ROOT, 'metafile.yml')) as f:
        models = {m['Config']: m for m in yaml.safe_load(f)['Models']
                  if m['In Collection'] == 'Mask2Former FocalNet'}
    assert sorted(models) == sorted(path for path, _, _ in CONFIGS.values())
    with open(osp.join(REPO_ROOT, 'docs', 'segmentation.md')) as f:
        docs = f.read()
    for task, (path, _, _) in CONFIGS.items():
        entry = models[path]
        assert entry['Metadata']['Parameters'] == f'{PARAMS[task] / 1e6:.1f}M'
        assert entry['Metadata']['Iterations'] == load(task).train_cfg.max_iters
        metrics = entry.get('Results', [{}])[0].get('Metrics', {})
        assert metrics == {'panoptic': {'PQ': 57.9}, 'instance': {},
                           'semantic': {'mIoU(ms+flip)': 58.5}}[task]
        assert 'Weights' not in entry  # none released
        [row] = [line for line in docs.splitlines() if line.startswith('| [Mask2Former') and path in line]
        assert f'{PARAMS[task] / 1e6:.1f}M' in row and 'paper' in row
        assert f'bash tools/dist_train.sh {path} 8' in docs


# ------------------------------------------------------------------------------ small runs
train_tool, test_tool = load_tool('tools/train.py'), load_tool('tools/test.py')



def small_model(head, extra_head=''):
    """Config text: the small FocalNet and a shrunken head of the same kind (20 queries, 1 pixel
    decoder layer, 3 decoder layers, 1024 points for the mask loss), for 128 px images."""
    c = SMALL_BACKBONE['embed_dim']
    num_points = 'train_cfg=dict(num_points=1024)'
    return f"""
image_size = (128, 128)
model = dict(
    backbone=dict(embed_dim={c}, depths={SMALL_BACKBONE['depths']}, init_cfg=None),
    {head}=dict(in_channels={[c, 2 * c, 4 * c, 8 * c]}, num_queries=20,
                pixel_decoder=dict(encoder=dict(num_layers=1)), transformer_decoder=dict(num_layers=3),
                {num_points + ',' if head == 'decode_head' else ''} {extra_head}),
    {'' if head == 'decode_head' else num_points})
"""


RUN = """
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=1)
val_cfg = None
val_dataloader = None
val_evaluator = None
param_scheduler = []
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=1))
log_processor = dict(by_epoch=False, window_size=1)
"""


def coco_small_config(tmp_path, task, data_root, ann_file, extra=''):
    """The COCO config with a small FocalNet and head, 128 px LSJ, one iteration."""
    path = tmp_path / f'mask2former_{task}_small.py'
    path.write_text(f"""
_base_ = {osp.join(REPO_ROOT, CONFIGS[task][0])!r}
{small_model('panoptic_head')}
data_preprocessor = dict(batch_augments=[dict(type='BatchFixedSizePad', size=image_size, img_pad_value=0,
    pad_mask=True, mask_pad_value=0, pad_seg={task == 'panoptic'}, seg_pad_value=255)])
model.update(data_preprocessor=data_preprocessor)
data_root = {str(data_root) + '/'!r}
train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    {"dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True)"
     if task == 'panoptic' else "dict(type='LoadAnnotations', with_bbox=True, with_mask=True)"},
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.8, 1.2), keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size, crop_type='absolute', recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        sampler=dict(type='InfiniteSampler', shuffle=False),
                        dataset=dict(data_root=data_root, ann_file={ann_file!r}, pipeline=train_pipeline))
{RUN}
{extra}
""")
    return str(path)


def log_losses(runner):
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        log = f.read()
    return {k: float(v) for k, v in re.findall(r'\b((?:d\d\.)?loss(?:_\w+)?): ([\d.]+)', log)}


def check_one_iteration(runner):
    assert runner.iter == 1
    losses = log_losses(runner)
    # Mask2Former's losses: class, mask (sigmoid CE) and dice for the last and 2 earlier layers
    for key in ('loss', 'loss_cls', 'loss_mask', 'loss_dice', 'd0.loss_cls', 'd1.loss_dice'):
        assert 0 < losses[key] < 1e3, (key, losses)
    backbone = runner.model.backbone
    assert backbone.arch_settings['use_postln'] and backbone.arch_settings['use_conv_embed']
    # the config's optimizer keys reach the runner's optimizer: backbone lr x0.1, gammas no decay
    groups = {id(p): g for g in runner.optim_wrapper.optimizer.param_groups for p in g['params']}
    gamma = backbone.layers[2].blocks[0].gamma_1
    assert groups[id(gamma)]['weight_decay'] == 0.0 and groups[id(gamma)]['lr'] == pytest.approx(1e-5)


@pytest.mark.slow
def test_instance_small_variant_trains_one_iteration_on_coco_mini(tmp_path, coco_mini):
    config = coco_small_config(tmp_path, 'instance', coco_mini, 'annotations.json',
                               extra="train_dataloader['dataset'].update(data_prefix=dict(img='images/'))")
    with DefaultScope.overwrite_default_scope('mmdet'):
        runner = train_tool.main([config, '--work-dir', str(tmp_path / 'work')])
    check_one_iteration(runner)


#: the semantic head sized for the data set's classes (+ Mask2Former's "no object" weight)
CLASSES_FROM_DATA = 'num_classes=num_classes, loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])'


@pytest.mark.slow
def test_semantic_small_variant_trains_one_iteration_on_camvid_mini(tmp_path, camvid_mini):
    from test_seg_train import layout_camvid
    classes = layout_camvid(camvid_mini, tmp_path / 'camvid')
    path = tmp_path / 'mask2former_semantic_small.py'
    path.write_text(f"""
_base_ = {osp.join(REPO_ROOT, CONFIGS['semantic'][0])!r}
num_classes = {len(classes)}
{small_model('decode_head', CLASSES_FROM_DATA)}
model.update(data_preprocessor=dict(size=image_size))
dataset = dict(type='BaseSegDataset', data_root={str(tmp_path / 'camvid')!r},
               metainfo=dict(classes={tuple(classes)!r}), img_suffix='.png', seg_map_suffix='_P.png',
               reduce_zero_label=False, data_prefix=dict(img_path='images', seg_map_path='labels'))
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                  dict(type='RandomCrop', crop_size=image_size), dict(type='PackSegInputs')]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        sampler=dict(type='InfiniteSampler', shuffle=False),
                        dataset=dict(_delete_=True, pipeline=train_pipeline, **dataset))
{RUN}
test_cfg = None
test_dataloader = None
test_evaluator = None
""")
    with DefaultScope.overwrite_default_scope('mmseg'):
        runner = train_tool.main([str(path), '--work-dir', str(tmp_path / 'work')])
    assert runner.model.decode_head.num_classes == 32
    check_one_iteration(runner)


@pytest.mark.slow
@pytest.mark.parametrize('task', ['panoptic', 'semantic'])
def test_memory_estimator_counts_mask_and_semantic_heads(tmp_path, task):
    """tools/analysis_tools/estimate_train_memory.py on the small variants: the targets of the
    task (masks + a semantic map of stuff / a semantic map) go through the loss, static memory is
    16 bytes per parameter, checkpointing the third stage keeps fewer activations."""
    tool = load_tool('tools/analysis_tools/estimate_train_memory.py', 'estimate_train_memory')
    if task == 'panoptic':
        config = coco_small_config(tmp_path, 'panoptic', tmp_path, 'unused.json')
    else:
        config = tmp_path / 'semantic_small.py'
        config.write_text(f"""
_base_ = {osp.join(REPO_ROOT, CONFIGS['semantic'][0])!r}
num_classes = 150
{small_model('decode_head')}
""")
    assert tool.task_of(Config.fromfile(str(config)))[0] == {'panoptic': 'panoptic', 'semantic': 'seg'}[task]
    results = tool.main([str(config), '--sizes', '64', '96', '--target', '128', '128',
                         '--with-cp', 'false', 'FFTF'])
    (params, static, plain_acts), (_, _, cp_acts) = results['false'], results['FFTF']
    assert static == 16 * params and 0 < cp_acts < plain_acts


# ------------------------------------------------------------------------------ panoptic
STUFF = dict(id=200, name='background-stuff', isthing=0, supercategory='background')


def make_coco_panoptic(coco_mini, root):
    """coco_mini's instances as a COCO-panoptic set: one RGB-encoded PNG per image (segment id
    = R + 256 G + 256^2 B; larger objects painted first, so smaller ones stay visible), every pixel
    no object covers one segment of a stuff class, crowd regions kept as iscrowd segments.
    Returns the panoptic annotation dict."""
    from panopticapi.utils import id2rgb
    from pycocotools.coco import COCO
    coco = COCO(osp.join(coco_mini, 'annotations.json'))
    os.makedirs(osp.join(root, 'panoptic'))
    annotations = []
    for image in coco.dataset['images']:
        pan = np.zeros((image['height'], image['width']), dtype=np.uint32)
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=image['id'])), key=lambda a: -a['area'])
        segments = []
        # segment ids 1..n per image: COCO's annotation ids (up to 9e11) exceed the 24 bits of the
        # RGB encoding (and uint32), and an overflowed id matched no pixel
        for segment_id, ann in enumerate(anns, 1):
            pan[coco.annToMask(ann) > 0] = segment_id
        stuff_id = len(anns) + 1
        pan[pan == 0] = stuff_id
        for segment_id, category_id, iscrowd in [(k, a['category_id'], a['iscrowd'])
                                                 for k, a in enumerate(anns, 1)] + [
                (stuff_id, STUFF['id'], 0)]:
            ys, xs = np.nonzero(pan == segment_id)
            if len(xs) == 0:  # hidden under smaller objects
                continue
            x0, y0 = int(xs.min()), int(ys.min())
            segments.append(dict(id=int(segment_id), category_id=category_id, iscrowd=iscrowd, area=len(xs),
                                 bbox=[x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]))
        name = image['file_name'].replace('.jpg', '.png')
        Image.fromarray(id2rgb(pan)).save(osp.join(root, 'panoptic', name))
        annotations.append(dict(image_id=image['id'], file_name=name, segments_info=segments))
    categories = [dict(c, isthing=1) for c in coco.dataset['categories']] + [STUFF]
    panoptic = dict(images=coco.dataset['images'], annotations=annotations, categories=categories)
    with open(osp.join(root, 'panoptic.json'), 'w') as f:
        json.dump(panoptic, f)
    os.symlink(osp.join(coco_mini, 'images'), osp.join(root, 'images'))
    return panoptic


def panoptic_meta(panoptic):
    things = tuple(c['name'] for c in panoptic['categories'] if c['isthing'])
    stuff = tuple(c['name'] for c in panoptic['categories'] if not c['isthing'])
    return dict(classes=things + stuff, thing_classes=things, stuff_classes=stuff)


def test_generated_panoptic_set_scores_100_pq_against_itself(tmp_path, coco_mini):
    """The generated PNG + JSON, read back by mmdet's CocoPanopticMetric as predictions in
    mmdet's format (label + instance * INSTANCE_OFFSET), give PQ 100 (things and stuff)."""
    from mmdet.evaluation import CocoPanopticMetric
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    from panopticapi.utils import rgb2id
    root = tmp_path / 'coco'
    panoptic = make_coco_panoptic(coco_mini, str(root))
    meta = panoptic_meta(panoptic)
    label_of = {c['id']: meta['classes'].index(c['name']) for c in panoptic['categories']}
    assert len(meta['thing_classes']) == 80 and meta['stuff_classes'] == ('background-stuff', )
    metric = CocoPanopticMetric(ann_file=str(root / 'panoptic.json'), seg_prefix=str(root / 'panoptic'),
                                nproc=1, outfile_prefix=str(tmp_path / 'out'))
    metric.dataset_meta = meta
    for image, ann in zip(panoptic['images'], panoptic['annotations']):
        ids = rgb2id(np.array(Image.open(root / 'panoptic' / ann['file_name'])))
        pred = np.full(ids.shape, len(meta['classes']), dtype=np.int64)  # VOID
        for k, seg in enumerate(ann['segments_info']):
            if not seg['iscrowd']:
                pred[ids == seg['id']] = label_of[seg['category_id']] + (k + 1) * INSTANCE_OFFSET
        metric.process({}, [dict(img_id=image['id'], img_path=f"images/{image['file_name']}",
                                 ori_shape=ids.shape,
                                 pred_panoptic_seg=dict(sem_seg=torch.from_numpy(pred)[None]))])
    result = metric.evaluate(len(panoptic['images']))
    assert result['coco_panoptic/PQ'] == pytest.approx(100.0)
    assert result['coco_panoptic/PQ_th'] == pytest.approx(100.0)
    assert result['coco_panoptic/PQ_st'] == pytest.approx(100.0)


@pytest.mark.slow
def test_panoptic_small_variant_trains_and_evaluates_pq(tmp_path, coco_mini):
    root = tmp_path / 'coco'
    panoptic = make_coco_panoptic(coco_mini, str(root))
    meta = panoptic_meta(panoptic)
    config = coco_small_config(tmp_path, 'panoptic', root, 'panoptic.json', extra=f"""
metainfo = {meta!r}
dataset = dict(data_root=data_root, ann_file='panoptic.json', metainfo=metainfo,
               data_prefix=dict(img='images/', seg='panoptic/'))
train_dataloader['dataset'].update(dataset)
model['panoptic_head'].update(num_things_classes=80, num_stuff_classes=1,
                              loss_cls=dict(class_weight=[1.0] * 81 + [0.1]))
model.update(panoptic_fusion_head=dict(num_things_classes=80, num_stuff_classes=1),
             test_cfg=dict(instance_on=False))  # PQ only: no instance post-processing
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
test_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                       dataset=dict(dataset, pipeline=test_pipeline))
test_evaluator = dict(_delete_=True, type='CocoPanopticMetric', ann_file=data_root + 'panoptic.json',
                      seg_prefix=data_root + 'panoptic/', nproc=1)
""")
    work = str(tmp_path / 'work')
    with DefaultScope.overwrite_default_scope('mmdet'):
        runner = train_tool.main([config, '--work-dir', work])
        check_one_iteration(runner)
        metrics = test_tool.main([config, osp.join(work, 'iter_1.pth'), '--work-dir', work])
    for key in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'):
        assert 0.0 <= metrics[f'coco_panoptic/{key}'] <= 100.0, metrics
