"""Checks of a training run that mmdet/mmseg leave to the user, each one line that names the fix.

A config inherited from a COCO/ADE20K recipe and pointed at a small set of one's own trains
without complaint into results of zero: heads sized for 80 classes, a warm-up of 500 iterations
in a run of 30, 512-pixel images blown up to 1333 pixels, a ResNet checkpoint handed to FocalNet.
Entry points for tools/train.py:

- :func:`drop_foreign_pretrained` (config only) removes, with one warning each, other backbones'
  weights that a FocalNet model inherited from an mmdet/mmseg base config;
- :func:`check_num_classes` (config only, before the model is built) refuses a head whose
  ``num_classes`` is not the number of classes of the dataset it is trained or validated on;
- :func:`warn_about_run` (on the built Runner: needs the dataset's length and image sizes) warns
  when the warm-up outlasts the run or the training scale is far above the images' own size, and
  refuses a warm-up that rounds to fewer than 2 iterations (mmengine fails on 0 without naming
  the setting, and at 1 keeps the learning rate at its warm-up start for the whole run); the
  templates' LinearWarmupLR fits itself to the run and is neither.
"""
import importlib
import math
import re
import statistics
from typing import Iterator, List, Optional, Sequence, Tuple

from mmengine.config import Config
from mmengine.runner import IterBasedTrainLoop

from ..engine.warmup import warmup_steps
from .data_paths import leaf_datasets

#: warn when the training pipeline enlarges the typical image by this linear factor or more
#: (COCO's recipe enlarges its median 640x480 image 1.67x; the ADE20K one not at all)
SCALE_WARN_FACTOR = 2.0
#: schedulers that raise the learning rate to its set value (warm-ups)
WARMUP_TYPES = ('LinearLR', 'ConstantLR', 'QuadraticWarmupLR')
#: resize transforms whose ``scale``/``scales`` set the training resolution (mmcv, mmdet, mmseg)
RESIZE_TYPES = ('Resize', 'RandomResize', 'RandomChoiceResize')
#: where a working example of each fix lives
TEMPLATES = 'configs/det/custom/ and configs/seg/custom/'


# --------------------------------------------------------------------------- foreign weights
#: checkpoint schemes that only ever name other backbones' weights (mmcv / mmengine model zoos)
FOREIGN_SCHEMES = ('open-mmlab://', 'openmmlab://', 'torchvision://', 'mmcls://', 'modelzoo://')
#: file names of other backbones' checkpoints (a FocalNet file would name FocalNet)
FOREIGN_NAMES = re.compile(r'resnet|resnext|res2net|regnet|hrnet|swin|convnext|vit|deit|beit|'
                           r'mit_|pvt|mobilenet|efficientnet|vgg|darknet|cspnext', re.I)


def foreign_checkpoint(checkpoint) -> bool:
    """True for a checkpoint name that obviously holds another backbone's weights."""
    if not isinstance(checkpoint, str) or 'focal' in checkpoint.lower():
        return False
    return checkpoint.startswith(FOREIGN_SCHEMES) or bool(
        FOREIGN_NAMES.search(checkpoint.rsplit('/', 1)[-1]))


def drop_foreign_pretrained(cfg: Config) -> List[str]:
    """Remove other backbones' weights that a FocalNet model inherited from a base config.

    mmseg's bases set ``model.pretrained='open-mmlab://resnet50_v1c'`` (and mmdet's a ResNet
    ``init_cfg``), which the segmentor hands to whatever backbone the config puts in; FocalNet
    would then fail to find that file. Each dropped setting is returned as one warning line that
    names it and how to say so in the config; weights that could be FocalNet's are left alone.
    """
    model = cfg.get('model')
    backbone = model.get('backbone') if isinstance(model, dict) else None
    if not isinstance(backbone, dict) or not str(backbone.get('type', '')).endswith('FocalNet'):
        return []
    arch = backbone.get('arch', 'tiny_srf') if isinstance(backbone.get('arch'), str) else 'tiny_srf'
    fix = (f'set it to None in your config (with ImageNet weights: model.backbone.init_cfg='
           f"dict(type='Pretrained', checkpoint='focalnet://{arch}'))")
    dropped = []
    for owner, key, path in ((model, 'pretrained', 'model.pretrained'),
                             (backbone, 'pretrained', 'model.backbone.pretrained')):
        if foreign_checkpoint(owner.get(key)):
            dropped.append(f'{path}={owner[key]!r} (from a base config) holds another backbone\'s '
                           f'weights: ignored for FocalNet; {fix}')
            owner[key] = None
    init_cfg = backbone.get('init_cfg')
    if isinstance(init_cfg, dict) and foreign_checkpoint(init_cfg.get('checkpoint')):
        dropped.append(f'model.backbone.init_cfg.checkpoint={init_cfg["checkpoint"]!r} (from a '
                       f'base config) holds another backbone\'s weights: ignored for FocalNet; '
                       f'{fix.replace("set it to None", "set init_cfg=None")}')
        backbone['init_cfg'] = None
    return dropped


# --------------------------------------------------------------------------- num_classes
def head_num_classes(model: dict, prefix: str = 'model') -> Iterator[Tuple[str, int]]:
    """(path, num_classes) of every classifying head of a model config.

    Region-proposal heads are skipped: they are class-agnostic (one 'object' class) by design.
    """
    if isinstance(model, dict):
        if str(model.get('type', '')).endswith('RPNHead'):
            return
        for key, value in model.items():
            if key == 'num_classes' and isinstance(value, int):
                yield f'{prefix}.num_classes', value
            elif key != 'rpn_head':
                yield from head_num_classes(value, f'{prefix}.{key}')
    elif isinstance(model, (list, tuple)):  # cascade stages, several auxiliary heads
        for i, value in enumerate(model):
            yield from head_num_classes(value, f'{prefix}[{i}]')


def dataset_classes(dataset: dict, scope: Optional[str]) -> Optional[Tuple[str, ...]]:
    """The classes a dataset config will have: its ``metainfo.classes``, else its type's default
    (``CocoDataset``: the 80 COCO classes); None when the config does not fix them."""
    metainfo = dataset.get('metainfo')
    if isinstance(metainfo, dict) and metainfo.get('classes') is not None:
        return tuple(metainfo['classes'])
    dataset_type = dataset.get('type')
    if not isinstance(dataset_type, str) or not scope:
        return None
    try:  # the library's datasets, imported directly: Registry.get would also set up a logger
        importlib.import_module(f'{scope}.datasets')
        registry = importlib.import_module(f'{scope}.registry').DATASETS
    except ImportError:
        return None
    dataset_cls = registry.module_dict.get(dataset_type.split('.')[-1])
    classes = getattr(dataset_cls, 'METAINFO', {}).get('classes')
    return tuple(classes) if classes else None


def _short(classes: Sequence[str], at_most: int = 6) -> str:
    shown = ', '.join(repr(c) for c in classes[:at_most])
    return f'({shown}{", ..." if len(classes) > at_most else ""})'


def check_num_classes(cfg: Config, loaders: Sequence[str] = ('train_dataloader', )) -> None:
    """Raise a one-line ValueError when a head's ``num_classes`` is not its datasets' class count.

    mmdet would otherwise train an 80-way head on 3 classes without a word, or hit a device-side
    assert when the data has more classes than the head has outputs.
    """
    heads = list(head_num_classes(cfg.get('model') or {}))
    if not heads:
        return
    scope = cfg.get('default_scope')
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not isinstance(loader_cfg, dict):
            continue
        for dataset in leaf_datasets(loader_cfg.get('dataset')):
            classes = dataset_classes(dataset, scope)
            if classes is None:
                continue
            for path, num_classes in heads:
                if num_classes != len(classes):
                    raise ValueError(
                        f'{path} is {num_classes} but the {loader} dataset has {len(classes)} '
                        f'classes {_short(classes)}: set num_classes = len(classes) in every head '
                        f'and the same metainfo=dict(classes=classes) in every dataloader (the '
                        f'templates in {TEMPLATES} derive both from one `classes`)')


# --------------------------------------------------------------------------- run warnings
def warmup_iterations(schedulers, epoch_length: int,
                      run_iters: Optional[int] = None) -> Optional[Tuple[str, int, int, str]]:
    """(type, length in iterations, length in scheduler steps, step unit) of the first warm-up
    scheduler, None if there is none (or, for LinearWarmupLR, when ``run_iters`` is not given)."""
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for scheduler in schedulers or []:
        kind = str(scheduler.get('type', ''))
        if kind.split('.')[-1] == 'LinearWarmupLR':  # a share of the run, fitted to it
            if run_iters is None or 'end' in scheduler:
                return None
            steps = warmup_steps(scheduler.get('share', 0.1), run_iters)
            return (kind, steps, steps, 'iteration') if steps else None
        if kind not in WARMUP_TYPES:
            continue
        if kind == 'LinearLR' and scheduler.get('start_factor', 1 / 3) >= scheduler.get('end_factor', 1.0):
            continue  # a linear decay, not a warm-up
        begin, end = scheduler.get('begin', 0), scheduler.get('end', math.inf)
        if not math.isfinite(end) or end > 1e8:  # mmengine's INF: until the end of the run
            continue
        if not scheduler.get('by_epoch', True):  # mmengine's default is True
            return kind, int(end - begin), int(end - begin), 'iteration'
        if not scheduler.get('convert_to_iter_based', False):  # steps once per epoch
            return kind, int((end - begin) * epoch_length), int(end - begin), 'epoch'
        # mmengine's convert_to_iter_based rounds both ends down to whole iterations
        iterations = int(end * epoch_length) - int(begin * epoch_length)
        return kind, iterations, iterations, 'iteration'
    return None


def _leaf(dataset):
    while True:
        if hasattr(dataset, 'datasets'):  # ConcatDataset
            dataset = dataset.datasets[0]
        elif hasattr(dataset, 'dataset'):  # RepeatDataset, ClassBalancedDataset
            dataset = dataset.dataset
        else:
            return dataset


def image_sizes(dataset, at_most: int = 20) -> List[Tuple[int, int]]:
    """(width, height) of up to ``at_most`` images spread over the dataset; annotation sizes
    where the dataset has them (COCO JSON), else the image file's header."""
    dataset = _leaf(dataset)
    if not hasattr(dataset, 'get_data_info') or len(dataset) == 0:
        return []
    step = max(1, len(dataset) // at_most)
    sizes = []
    for index in range(0, len(dataset), step)[:at_most]:
        info = dataset.get_data_info(index)
        if info.get('width') and info.get('height'):
            sizes.append((int(info['width']), int(info['height'])))
        elif info.get('img_path'):
            from PIL import Image
            try:
                with Image.open(info['img_path']) as image:  # reads the header only
                    sizes.append(image.size)
            except OSError:
                continue
    return sizes


def training_scales(transforms) -> Iterator[Tuple[Tuple[int, int], bool]]:
    """((w, h), keep_ratio) of every resize target in a pipeline, nested choices included."""
    for transform in transforms:
        nested = getattr(transform, 'transforms', None)  # Compose, RandomChoice, RandomApply
        if nested is not None:
            yield from training_scales(nested if isinstance(nested, (list, tuple)) else [nested])
            continue
        if type(transform).__name__ not in RESIZE_TYPES:
            continue
        keep_ratio = getattr(transform, 'keep_ratio',
                             getattr(transform, 'resize_cfg', {}).get('keep_ratio', False))
        scales = getattr(transform, 'scales', None) or getattr(transform, 'scale', None)
        if not scales:
            continue
        if isinstance(scales, int) or (isinstance(scales, tuple) and isinstance(scales[0], int)):
            scales = [scales]
        for scale in scales:
            if isinstance(scale, int):
                scale = (scale, scale)
            if isinstance(scale, (tuple, list)) and len(scale) == 2 and all(
                    isinstance(s, int) and s > 0 for s in scale):
                yield tuple(scale), bool(keep_ratio)


def upscaling(scale: Tuple[int, int], keep_ratio: bool, size: Tuple[int, int]) -> float:
    """Linear factor by which a resize to ``scale`` changes an image of ``size`` (mmcv's rule:
    with keep_ratio the long side is capped by max(scale) and the short side by min(scale))."""
    if keep_ratio:
        return min(max(scale) / max(size), min(scale) / min(size))
    return math.sqrt(scale[0] * scale[1] / (size[0] * size[1]))


def warn_about_run(runner) -> List[str]:
    """Log (one line each) and return the warnings about a built Runner's training run; raise a
    one-line ValueError for a warm-up that mmengine cannot run (fewer than 2 iterations).

    Builds the train loop (and so the dataset) the way ``runner.train()`` would; train() then
    uses the same loop.
    """
    loop = runner.train_loop
    if loop is None:
        return []
    warnings = []
    epoch_length = len(loop.dataloader)
    run = loop.max_iters
    schedulers = runner.cfg.get('param_scheduler')
    warmup = warmup_iterations(schedulers, epoch_length, run)
    by_epoch = not isinstance(loop, IterBasedTrainLoop)  # its max_epochs is a placeholder 1
    fit = ("type='LinearWarmupLR', share=0.1 without end: a share of the run, as in "
           f'{TEMPLATES}')
    if warmup is not None and warmup[2] < 2:
        # mmengine: 0 steps fails ("end should be larger than begin"); 1 leaves the LR at
        # start_factor times its value for the whole run (its warm-up ends one step early)
        kind, _, steps, unit = warmup
        per_epoch = f' ({epoch_length} iterations per epoch)' if by_epoch else ''
        raise ValueError(
            f'the {kind} warm-up spans {steps} {unit}(s){per_epoch}, which mmengine cannot run '
            f'(at 1 the learning rate stays at start_factor x its value for the whole run): make '
            f'it at least 2 {unit}s, or warm up over a share of the run ({fit})')
    if warmup is not None and warmup[1] >= run and not warmup[0].endswith('LinearWarmupLR'):
        epochs = getattr(loop, 'max_epochs', None) if by_epoch else None
        shape = f' ({epochs} epochs x {epoch_length} iterations)' if epochs else ' (train_cfg.max_iters)'
        warnings.append(
            f'the {warmup[0]} warm-up lasts {warmup[1]} iterations but the whole run has {run}'
            f'{shape}: the learning rate does not reach its set value before the last iteration; end '
            f'the warm-up at a '
            f'fraction of the run ({fit})')
    dataset = loop.dataloader.dataset
    pipeline = getattr(_leaf(dataset), 'pipeline', None)
    scales = list(training_scales(getattr(pipeline, 'transforms', [])))
    sizes = image_sizes(dataset) if scales else []
    if sizes:
        # the typical image as (long, short) sides: portrait and landscape alike
        size = (int(statistics.median(max(s) for s in sizes)), int(statistics.median(min(s) for s in sizes)))
        scale, keep_ratio = max(scales, key=lambda s: upscaling(s[0], s[1], size))
        factor = upscaling(scale, keep_ratio, size)
        if factor >= SCALE_WARN_FACTOR:
            warnings.append(
                f'the training pipeline resizes to {scale} but the images are about '
                f'{size[0]}x{size[1]} (median of {len(sizes)}): {factor:.1f}x enlarged, '
                f'{factor ** 2:.1f}x the pixels to compute; set the Resize scale near the images\' '
                f'own size (image_scale in {TEMPLATES})')
    for warning in warnings:
        runner.logger.warning(warning)
    return warnings
