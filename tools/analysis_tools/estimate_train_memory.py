"""Estimate the training memory per GPU of a detection config without a GPU.

    python tools/analysis_tools/estimate_train_memory.py configs/det/dino_focalnet_l_fl3_4scale_12e.py \
        [--sizes 256 384] [--target 800 1333] [--batch 2] [--with-cp true false]

Static memory: fp32 weights + gradients + AdamW's two moments = 16 bytes per trainable
parameter (divided by the number of GPUs under FSDP, --shards). Activations: the tensors autograd
keeps for the backward pass of one training step (loss included), counted exactly on the CPU
(unique storages seen by ``torch.autograd.graph.saved_tensors_hooks``) at small square images,
fitted as a + b * pixels and extrapolated to ``--batch`` images of ``--target`` size. On CPU
mmcv's deformable attention runs its PyTorch path, which keeps every level's grid-sample output
for backward (several GB per encoder layer at detection size); during the measurement it keeps
what mmcv's CUDA kernel keeps instead (value, sampling locations, attention weights).
Allocator caching, workspaces and the CUDA context come on top: the printed peak is an estimate,
not a measurement.
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
    parser.add_argument('--with-cp', nargs='+', default=['true', 'false'],
                        choices=['true', 'false'], help='backbone activation checkpointing settings')
    parser.add_argument('--shards', type=int, default=1,
                        help='GPUs the static memory is sharded over (FSDP); 1 = DDP')
    return parser.parse_args(argv)


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


def make_batch(size, num_classes, seed=0):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    sample = DetDataSample(metainfo=dict(img_shape=(size, size), batch_input_shape=(size, size),
                                         pad_shape=(size, size), ori_shape=(size, size)))
    xy = torch.rand(6, 2, generator=g) * size * 0.6
    wh = torch.rand(6, 2, generator=g) * size * 0.3 + 8
    sample.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1),
                                       labels=torch.randint(0, num_classes, (6, ), generator=g))
    return torch.randn(1, 3, size, size, generator=g), [sample]


def main(argv=None):
    args = parse_args(argv)
    if len(args.sizes) < 2:
        raise SystemExit('--sizes needs at least two image sizes to fit a + b * pixels')
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(args.config)
    init_default_scope('mmdet')
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
    from mmdet.registry import MODELS
    cfg.model.backbone.init_cfg = None
    torch.set_grad_enabled(True)
    target_pixels = args.target[0] * args.target[1]
    results = {}
    for with_cp in args.with_cp:
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone.with_cp = with_cp == 'true'
        torch.manual_seed(0)
        model = MODELS.build(model_cfg)
        model.init_weights()  # DINO leaves e.g. level_embed uninitialised until here
        model.train()
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        points = []
        for size in args.sizes:
            inputs, samples = make_batch(size, cfg.model.bbox_head.num_classes)
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
              f'{args.target[1]}; estimated peak {(static + activations) / 2**30:.1f} GiB', flush=True)
        del model
    print(f'\nEstimated training peak per GPU ({args.batch} x {args.target[0]}x{args.target[1]}, '
          f'{args.shards} shard(s)):')
    for with_cp, (_, static, activations) in results.items():
        print(f'  with_cp={with_cp}: {(static + activations) / 2**30:.1f} GiB '
              f'(static {static / 2**30:.2f} + activations {activations / 2**30:.2f})')
    return results


if __name__ == '__main__':
    main()
