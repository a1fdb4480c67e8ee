# FocalNet-H DINO 5-scale 12e (NOT OFFICIAL, see the base) trained with FSDP: parameters,
# gradients and AdamW states sharded over the GPUs by mmengine's FlexibleRunner + FSDPStrategy
# (torch FullyShardedDataParallel). Same model, data and schedule as the base.
#   bash tools/dist_train.sh configs/det/dino_focalnet_h_fl4_5scale_12e_fsdp.py 8
# tools/train.py builds mmengine's FlexibleRunner for any config with a `strategy`; these lines
# turn FSDP on for another DINO config too, e.g. from the command line:
#   --cfg-options strategy.type=FSDPStrategy optim_wrapper.type=FiniteFSDPOptimWrapper \
#     runner_type=SkipBadSamplesFlexibleRunner
# Checkpoints are saved per rank ('local' state dicts) by default; see docs/dino.md.
_base_ = './dino_focalnet_h_fl4_5scale_12e.py'

runner_type = 'SkipBadSamplesFlexibleRunner'  # mmengine's FlexibleRunner; data sets in SkipBadSamples
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        # one FSDP unit per >= 10M parameters: each H block of stages 2-3 (24.9M / 99M) and the
        # groups of smaller blocks, so only one unit's full parameters live on a GPU at a time
        auto_wrap_policy=dict(
            type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy',
            min_num_params=10_000_000)))
# mmengine's OptimWrapper would clip each rank's parameter shard by that shard's own norm;
# FSDPOptimWrapper (focalnet_mm) clips by the norm of the whole gradient (max_norm 0.1 as DINO).
optim_wrapper = dict(type='FiniteFSDPOptimWrapper')  # FSDPOptimWrapper + the non-finite guard
