#!/usr/bin/env bash
# The one-call GPU check (docs/benchmarks.md "GPU"): every step under `timeout`, each result
# written to OUT_DIR as soon as it exists (8 files at most), about 7 minutes on an H100/H200
# including `bash .gpu/setup_device.sh`.
#
#   bash tools/analysis_tools/gpu_check.sh OUT_DIR              # a CUDA GPU
#   bash tools/analysis_tools/gpu_check.sh OUT_DIR --device cpu # the same steps, tiny, on CPU
#
# (a) context chain alone per impl x fp32/tf32/bf16/fp16, fwd / input-grad / weight-grad apart,
#     conv backend, at the 4 Mask R-CNN stage shapes, kernels 9/11/13  -> a_context_chain.json
# (b) GPU numerics tests of the kernels, each with a time limit           -> log.txt
# (c) backbone forward+backward at 2x3x800x1344, every impl, timm, Swin-T -> c_backbone_train.json
# (d) Mask R-CNN train step vs Swin-T, fp32 and AMP                       -> d_maskrcnn_{fp32,amp}.json
# (e) 224^2 inference, batch 128, fp16, eager and torch.compile           -> e_infer224.json
# plus env.txt (device, versions) and log.txt (every step's output, tables, failures).
# A failing or timed-out step is recorded in log.txt and the next step runs. The CPU limits are
# generous: on a shared 2-core machine at load ~10 the CPU run took 307 s.
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUT_DIR [--device cpu]}
DEVICE=cuda
if [ "${2:-}" = "--device" ]; then DEVICE=${3:?--device needs cuda or cpu}; fi
case $DEVICE in cuda|cpu) ;; *) echo "error: --device $DEVICE: use cuda or cpu" >&2; exit 2;; esac
PYTHON=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
LOG=$OUT/log.txt
: > "$LOG"
B=tools/analysis_tools
T0=$SECONDS

# run NAME SECONDS CMD...: the step's output goes to log.txt as it comes; a failure is logged
run() {
    local name=$1 limit=$2; shift 2
    echo "== [$((SECONDS - T0))s] $name (limit ${limit}s): $*" | tee -a "$LOG"
    timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "== TIMEOUT after ${limit}s: $name" | tee -a "$LOG"
    elif [ $rc -ne 0 ]; then
        echo "== FAILED (exit $rc): $name" | tee -a "$LOG"
    else
        echo "== done: $name" | tee -a "$LOG"
    fi
}

if [ "$DEVICE" = cuda ]; then
    if [ -f .gpu/setup_device.sh ]; then
        run "setup (.gpu/setup_device.sh)" 120 bash .gpu/setup_device.sh
    fi
    if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "error: no CUDA GPU visible to $PYTHON; run with --device cpu for the CPU smoke run" \
            | tee -a "$LOG" >&2
        exit 1
    fi
fi
"$PYTHON" - > "$OUT/env.txt" 2>&1 <<'EOF'
import platform, torch
print('python', platform.python_version(), '| torch', torch.__version__, '| cuda', torch.version.cuda,
      '| cudnn', torch.backends.cudnn.version())
if torch.cuda.is_available():
    print('gpu', torch.cuda.get_device_name(0))
try:
    import triton; print('triton', triton.__version__)
except ImportError:
    print('triton not installed')
for name in ('timm', 'mmcv', 'mmdet', 'mmengine'):
    try:
        print(name, __import__(name).__version__)
    except Exception as e:
        print(name, 'unavailable:', type(e).__name__)
EOF
cat "$OUT/env.txt" | tee -a "$LOG"

if [ "$DEVICE" = cuda ]; then
    run "(a) context chain" 150 "$PYTHON" $B/benchmark_focal_context.py --device cuda \
        --repeats 3 --iters 5 --warmup 2 --out "$OUT/a_context_chain.json"
    run "(b) GPU numerics" 90 "$PYTHON" -m pytest -q -p no:cacheprovider -o addopts= \
        --timeout 80 tests/test_ops_focal_context.py -k gpu
    run "(c) backbone train 2x3x800x1344" 70 "$PYTHON" $B/benchmark_backbone.py --device cuda \
        --batch 2 --size 800 1344 --mode train --dtype fp32 bf16 --impls reference fast triton \
        --repeats 3 --iters 3 --warmup 2 --out "$OUT/c_backbone_train.json"
    run "(d) Mask R-CNN step fp32" 40 "$PYTHON" $B/benchmark_train_step.py --device cuda \
        --batch 2 --size 800 1344 --repeats 3 --iters 3 --warmup 2 --out "$OUT/d_maskrcnn_fp32.json"
    run "(d) Mask R-CNN step AMP" 40 "$PYTHON" $B/benchmark_train_step.py --device cuda --amp \
        --batch 2 --size 800 1344 --repeats 3 --iters 3 --warmup 2 --out "$OUT/d_maskrcnn_amp.json"
    run "(e) 224 inference eager + compiled" 50 "$PYTHON" $B/benchmark_backbone.py --device cuda \
        --batch 128 --size 224 224 --focal-windows 3 --mode infer --dtype fp16 --compile off on \
        --repeats 3 --iters 5 --warmup 2 --out "$OUT/e_infer224.json"
else
    TINY=(--embed-dim 16 --depths 1 1 1 1)
    run "(a) context chain (tiny)" 90 "$PYTHON" $B/benchmark_focal_context.py --device cpu \
        --shapes 2x16x16x20 2x32x8x10 --kernels 3 5 --repeats 1 --iters 1 --warmup 1 \
        --out "$OUT/a_context_chain.json"
    run "(b) numerics (CPU tests)" 120 "$PYTHON" -m pytest -q -p no:cacheprovider -o addopts= \
        tests/test_ops_focal_context.py -k "fast_matches or dispatch or gpu"
    run "(c) backbone train (tiny)" 90 "$PYTHON" $B/benchmark_backbone.py --device cpu \
        --batch 1 --size 64 64 "${TINY[@]}" --focal-windows 3 --mode train --dtype fp32 \
        --models focalnet timm_focalnet --repeats 1 --iters 1 --warmup 1 \
        --out "$OUT/c_backbone_train.json"
    run "(d) Mask R-CNN step (tiny)" 150 "$PYTHON" $B/benchmark_train_step.py \
        configs/maskrcnn_focalnet_t_3x.py --device cpu --batch 1 --size 96 128 --objects 2 --repeats 1 --iters 1 --warmup 1 \
        --out "$OUT/d_maskrcnn_fp32.json"
    run "(e) inference (tiny, eager)" 90 "$PYTHON" $B/benchmark_backbone.py --device cpu \
        --batch 2 --size 32 32 "${TINY[@]}" --focal-windows 3 --mode infer --dtype fp32 \
        --repeats 1 --iters 1 --warmup 1 --out "$OUT/e_infer224.json"
fi
echo "== finished in $((SECONDS - T0))s; results in $OUT" | tee -a "$LOG"
grep -E '^== (TIMEOUT|FAILED)' "$LOG" && exit 1
exit 0
