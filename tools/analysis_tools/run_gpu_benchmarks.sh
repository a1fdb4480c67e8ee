#!/usr/bin/env bash
# Every GPU measurement of docs/benchmarks.md in one go (issue 8 targets), JSON + tables in OUT_DIR.
#   bash tools/analysis_tools/run_gpu_benchmarks.sh [OUT_DIR]     (default work_dirs/benchmarks)
# Needs a CUDA GPU and the environment of tools/setup_env.sh (or .gpu/setup_device.sh).
set -euo pipefail
OUT=${1:-work_dirs/benchmarks}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "error: no CUDA GPU visible to $PYTHON; these benchmarks time GPUs (CPU: see docs/benchmarks.md)" >&2
    exit 1
fi
"$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0), "torch", torch.__version__)' | tee "$OUT/device.txt"
# each step's full output goes to log.txt; a failing step is reported and the next one runs
step() { local name=$1; shift; echo "== $name"; "$@" 2>&1 | tee -a "$OUT/log.txt" | tail -n 14 || echo "== FAILED: $name"; }
B=tools/analysis_tools
# 0. correctness of the fast paths on this GPU (fp32/fp16/bf16, forward + backward)
step "GPU numerics" "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_ops_focal_context.py
# 1-2. backbone at detection scale, forward + backward (target 1), eager / channels-last / compiled
step "det train" "$PYTHON" $B/benchmark_backbone.py --device cuda --batch 2 --size 800 1344 \
    --mode train --dtype fp32 fp16 bf16 --repeats 7 --iters 10 --warmup 5 --out "$OUT/det_train.json"
step "det train channels-last" "$PYTHON" $B/benchmark_backbone.py --device cuda --batch 2 --size 800 1344 \
    --mode train --dtype fp16 --channels-last --repeats 5 --iters 10 --warmup 5 --out "$OUT/det_train_cl.json"
step "det train compiled" "$PYTHON" $B/benchmark_backbone.py --device cuda --batch 2 --size 800 1344 \
    --mode train --dtype fp32 bf16 --compile on --repeats 5 --iters 10 --warmup 5 --out "$OUT/det_train_compiled.json"
# 3. classification-scale inference throughput (target 2)
step "224 infer" "$PYTHON" $B/benchmark_backbone.py --device cuda --batch 128 --size 224 224 \
    --focal-windows 3 --mode infer --dtype fp16 --compile off on --repeats 7 --iters 20 --warmup 5 \
    --out "$OUT/infer_224.json"
# 4. whole Mask R-CNN train step vs Swin-T (target 3)
step "Mask R-CNN step fp32" "$PYTHON" $B/benchmark_train_step.py --device cuda --batch 2 --size 800 1344 \
    --repeats 7 --iters 10 --warmup 5 --out "$OUT/maskrcnn_step_fp32.json"
step "Mask R-CNN step AMP" "$PYTHON" $B/benchmark_train_step.py --device cuda --batch 2 --size 800 1344 \
    --amp --repeats 7 --iters 10 --warmup 5 --out "$OUT/maskrcnn_step_amp.json"
echo "results in $OUT"
