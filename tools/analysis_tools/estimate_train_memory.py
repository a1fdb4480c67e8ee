"""Estimate the training memory per GPU of a detection or segmentation config without a GPU.

    python tools/analysis_tools/estimate_train_memory.py configs/det/dino_focalnet_l_fl3_4scale_12e.py \
        [--sizes 256 384] [--target 800 1333] [--batch 2] [--with-cp true false FFTF] [--amp]

Detectors (boxes), mmdet's Mask2Former/MaskFormer (instance masks; panoptic adds a semantic map of
stuff classes) and mmseg models (semantic maps) each get random targets of their kind.

Static memory: fp32 weights + gradients + AdamW's two moments = 16 bytes per trainable
parameter (divided by the number of GPUs under FSDP, --shards). Activations: the tensors autograd
keeps for the backward pass of one training step (loss included), counted exactly on the CPU
(unique storages seen by ``torch.autograd.graph.saved_tensors_hooks``) at small square images,
fitted as a + b * pixels and extrapolated to ``--batch`` images of ``--target`` size. On CPU
mmcv's deformable attention runs its PyTorch path, which keeps every level's grid-sample output
for backward (several GB per encoder layer at detection size); during the measurement it keeps
what mmcv's CUDA kernel keeps instead (value, sampling locations, attention weights).
``--amp`` counts under CPU bfloat16 autocast, standing in for CUDA fp16 autocast (``--amp`` of
tools/train.py): the same 2 bytes per saved low-precision tensor, though the two autocast op lists
differ in detail. Allocator caching, workspaces and the CUDA context come on top: the printed peak
is an estimate, not a measurement.
"""
import argparse
import copy
import logging
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmcv.ops.multi_scale_deform_attn import (
    multi_scale_deformable_attn_pytorch as _msda_pytorch,  # noqa: E402  (before it is patched)
)

import focalnet_mm  # noqa: E402,F401


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--sizes', type=int, nargs='+', default=[256, 384],
                        help='square image sides measured on the CPU (at least two)')
    parser.add_argument('--target', type=int, nargs=2, default=[800, 1333], metavar=('H', 'W'),
                        help='training image size to extrapolate to (default 800 1333, the '
                        'largest multi-scale size)')
    parser.add_argument('--batch', type=int, default=2, help='images per GPU (default 2)')
    parser.add_argument('--with-cp', nargs='+', default=['true', 'false'], type=with_cp_setting,
                        help="backbone activation checkpointing settings: 'true', 'false', or one "
                        "T/F per stage (e.g. FFTF: the third stage only)")
    parser.add_argument('--amp', action='store_true',
                        help='count under mixed precision (CPU bf16 autocast for CUDA fp16)')
    parser.add_argument('--shards', type=int, default=1,
                        help='GPUs the static memory is sharded over (FSDP); 1 = DDP')
    return parser.parse_args(argv)


def with_cp_setting(text):
    """'true' / 'false' / 'FFTF' -> the text, checked (argparse type)."""
    if text in ('true', 'false') or (text and set(text) <= set('TF')):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use 'true', 'false' or one T/F per stage, e.g. FFTF")


def with_cp_value(text):
    """The backbone's ``with_cp`` for a --with-cp setting."""
    if text in ('true', 'false'):
        return text == 'true'
    return tuple(c == 'T' for c in text)


def saved_bytes(model, inputs, data_samples) -> int:
    """Bytes of the unique storages autograd saves during one loss computation (parameters,
    which autograd also saves, are static memory and left out)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t):
        if isinstance(t, torch.Tensor) and t.device.type != 'meta':
            s = t.untyped_storage()
            if s.data_ptr() not in params:
                storages[s.data_ptr()] = s.nbytes()
        return t

    from unittest import mock
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), mock.patch(
            'mmcv.ops.multi_scale_deform_attn.multi_scale_deformable_attn_pytorch',
            _SavesLikeTheCudaKernel.apply):
        losses = model.loss(inputs, data_samples)
        sum(v.sum() if isinstance(v, torch.Tensor) else sum(v) for v in losses.values())
    return sum(storages.values())


class _SavesLikeTheCudaKernel(torch.autograd.Function):
    """Deformable attention computed by mmcv's PyTorch path, saving for backward exactly the
    tensors mmcv's CUDA ``MultiScaleDeformableAttnFunction`` saves (memory counting only: no
    backward is run)."""

    @staticmethod
    def forward(ctx, value, spatial_shapes, sampling_locations, attention_weights):
        ctx.save_for_backward(value, spatial_shapes, sampling_locations, attention_weights)
        return _msda_pytorch(value, spatial_shapes, sampling_locations, attention_weights)


def task_of(cfg):
    """(task, classes, stuff classes): 'seg' for mmseg models, 'panoptic' / 'instance' for mmdet
    mask-classification models (a ``panoptic_head``), 'det' for the other detectors."""
    model = cfg.model
    if cfg.get('default_scope') == 'mmseg':
        return 'seg', model.decode_head.num_classes, 0
    if 'panoptic_head' in model:
        things, stuff = model.panoptic_head.num_things_classes, model.panoptic_head.num_stuff_classes
        return ('panoptic' if stuff else 'instance'), things, stuff
    return 'det', model.bbox_head.num_classes, 0


def make_batch(size, num_classes, seed=0, task='det', num_stuff=0):
    """One random image of size x size with 6 random objects as the task's targets: boxes (det),
    + masks (instance), + a semantic map with stuff regions (panoptic), or a semantic map (seg)."""
    from mmengine.structures import InstanceData, PixelData
    g = torch.Generator().manual_seed(seed)
    meta = dict(img_shape=(size, size), batch_input_shape=(size, size), pad_shape=(size, size),
                ori_shape=(size, size))
    xy = (torch.rand(6, 2, generator=g) * size * 0.6).long()
    wh = (torch.rand(6, 2, generator=g) * size * 0.3).long() + 8
    labels = torch.randint(0, num_classes, (6, ), generator=g)
    masks = torch.zeros(6, size, size, dtype=torch.uint8)
    for mask, (x, y), (w, h) in zip(masks, xy.tolist(), wh.tolist()):
        mask[y:y + h, x:x + w] = 1
    if task == 'seg':
        from mmseg.structures import SegDataSample
        sample = SegDataSample(metainfo=meta)
        sem = torch.zeros(1, size, size, dtype=torch.long)
        for mask, label in zip(masks, labels.tolist()):
            sem[0][mask.bool()] = label
        sample.gt_sem_seg = PixelData(data=sem)
        return torch.randn(1, 3, size, size, generator=g), [sample]
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    sample = DetDataSample(metainfo=meta)
    sample.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1).float(), labels=labels)
    if task in ('instance', 'panoptic'):
        sample.gt_instances.masks = BitmapMasks(masks.numpy(), size, size)
    if task == 'panoptic':  # stuff in the left and right halves, the things painted over them
        sem = torch.full((1, size, size), num_classes, dtype=torch.long)
        sem[0, :, size // 2:] = num_classes + min(1, num_stuff - 1)
        for mask, label in zip(masks, labels.tolist()):
            sem[0][mask.bool()] = label
        sample.gt_sem_seg = PixelData(sem_seg=sem)
    return torch.randn(1, 3, size, size, generator=g), [sample]


def main(argv=None):
    args = parse_args(argv)
    if len(args.sizes) < 2:
        raise SystemExit('--sizes needs at least two image sizes to fit a + b * pixels')
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    # building and initialising a DINO model logs thousands of lines (one per parameter): keep
    # warnings only, so the estimate is what this prints
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        return estimate(args, cfg)
    finally:
        logger.setLevel(level)


def estimate(args, cfg):
    from mmengine.registry import MODELS
    task, num_classes, num_stuff = task_of(cfg)
    cfg.model.backbone.init_cfg = None
    torch.set_grad_enabled(True)
    target_pixels = args.target[0] * args.target[1]
    results = {}
    for with_cp in args.with_cp:
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone.with_cp = with_cp_value(with_cp)
        torch.manual_seed(0)
        model = MODELS.build(model_cfg)
        model.init_weights()  # DINO leaves e.g. level_embed uninitialised until here
        model.train()
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        points = []
        for size in args.sizes:
            inputs, samples = make_batch(size, num_classes, task=task, num_stuff=num_stuff)
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=args.amp):
                points.append((size * size, saved_bytes(model, inputs, samples)))
            print(f'with_cp={with_cp} {size}x{size}: {points[-1][1] / 2**20:.0f} MiB saved for backward',
                  flush=True)
        (p0, b0), (p1, b1) = points[0], points[-1]
        slope = (b1 - b0) / (p1 - p0)
        per_image = b0 + slope * (target_pixels - p0)
        activations = per_image * args.batch
        static = 16 * params / args.shards
        results[with_cp] = (params, static, activations)
        print(f'with_cp={with_cp}: {params / 1e6:.1f}M trainable params -> {static / 2**30:.2f} GiB '
              f'static (fp32 weights+grads+AdamW{f" / {args.shards} shards" if args.shards > 1 else ""}); '
              f'activations {activations / 2**30:.2f} GiB for {args.batch} x {args.target[0]}x'
              f'{args.target[1]}{" (amp)" if args.amp else ""}; '
              f'estimated peak {(static + activations) / 2**30:.1f} GiB', flush=True)
        del model
    print(f'\nEstimated training peak per GPU ({args.batch} x {args.target[0]}x{args.target[1]}, '
          f'{args.shards} shard(s)):')
    for with_cp, (_, static, activations) in results.items():
        print(f'  with_cp={with_cp}: {(static + activations) / 2**30:.1f} GiB '
              f'(static {static / 2**30:.2f} + activations {activations / 2**30:.2f})')
    return results


if __name__ == '__main__':
    main()
