#!/usr/bin/env bash
# The one-call GPU check (docs/benchmarks.md "GPU"): every step under `timeout`, each result
# written to OUT_DIR as soon as it exists (8 files at most), about 9 minutes on an H100/H200
# including `bash .gpu/setup_device.sh`.
#
#   bash tools/analysis_tools/gpu_check.sh OUT_DIR              # a CUDA GPU
#   bash tools/analysis_tools/gpu_check.sh OUT_DIR --device cpu # the same steps, tiny, on CPU
#
# (a) the tiled kernels' tile candidates ranked against the row kernels and reference (prints
#     the TILE_TABLE to paste into focalnet_mm/ops/triton_tiled.py)   -> a_candidates.json, log.txt
# (a) context chain alone per impl x fp32/tf32/bf16/fp16, fwd / input-grad / weight-grad apart,
#     conv backend, at the 4 Mask R-CNN stage shapes, kernels 9/11/13  -> a_context_chain.json
# (b) GPU numerics tests of the kernels, each with a time limit           -> log.txt
# (c) backbone forward+backward at 2x3x800x1344, every impl, timm, Swin-T -> c_backbone_train.json
# (d) Mask R-CNN train step vs Swin-T per impl (auto, reference, triton), fp32 and AMP, batch 2
#     and 8, then a DINO-L (fl3, 4-scale, with_cp) step with the default impl
#                                                                          -> d_maskrcnn_{fp32,amp}.json
# (e) 224^2 inference, batch 128, fp16, eager and torch.compile, every impl -> e_infer224.json
# plus env.txt (device, versions) and log.txt (every step's output, tables, failures); the JSON of
# each (d)/(e) run also lands in log.txt, so one file per step is enough to come back.
# A failing or timed-out step is recorded in log.txt and the next step runs. The CPU limits are
# generous: on a shared 2-core machine at load ~10 the CPU run took 307 s.
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUT_DIR [--device cpu]}
DEVICE=cuda
if [ "${2:-}" = "--device" ]; then DEVICE=${3:?--device needs cuda or cpu}; fi
case $DEVICE in cuda|cpu) ;; *) echo "error: --device $DEVICE: use cuda or cpu" >&2; exit 2;; esac
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# the repository's .venv (tools/setup_env.sh) when there is one, as dist_train.sh; else python3
# (the GPU machine's stack from .gpu/setup_device.sh); PYTHON=... overrides both
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
cd "$ROOT"
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
LOG=$OUT/log.txt
: > "$LOG"
B=tools/analysis_tools
T0=$SECONDS

# The whole script stays within BUDGET seconds (default 570: one device call may run 600 s): a
# step's limit is cut to what is left, and a step with under 10 s left is skipped (logged).
BUDGET=${GPU_CHECK_BUDGET:-570}

# run NAME SECONDS CMD...: the step's output goes to log.txt as it comes; a failure is logged
run() {
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET - (SECONDS - T0)))
    if [ $left -lt 10 ]; then
        echo "== SKIPPED (budget of ${BUDGET}s spent): $name" | tee -a "$LOG"
        return
    fi
    [ $limit -gt $left ] && limit=$left
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
    run "(a) tile candidates" 90 "$PYTHON" $B/benchmark_focal_context.py --candidates \
        --out "$OUT/a_candidates.json"
    rm -f "$OUT"/a_candidates_tile_table.py  # the table is in log.txt (8 files come back at most)
    run "(a) context chain" 150 "$PYTHON" $B/benchmark_focal_context.py --device cuda \
        --repeats 3 --iters 5 --warmup 2 --out "$OUT/a_context_chain.json"
    run "(b) GPU numerics" 90 "$PYTHON" -m pytest -q -p no:cacheprovider -o addopts= \
        --timeout 80 tests/test_ops_focal_context.py tests/test_ops_triton_tiled.py -k gpu
    run "(c) backbone train 2x3x800x1344" 70 "$PYTHON" $B/benchmark_backbone.py --device cuda \
        --batch 2 --size 800 1344 --mode train --dtype fp32 bf16 --impls reference fast triton \
        --repeats 3 --iters 3 --warmup 2 --out "$OUT/c_backbone_train.json"
    # (d): per precision and batch, one process times the three impls and Swin-T side by side
    for prec in fp32 amp; do
        AMP=(); [ $prec = amp ] && AMP=(--amp)
        for batch in 2 8; do
            run "(d) Mask R-CNN step $prec batch=$batch" 75 "$PYTHON" $B/benchmark_train_step.py \
                --device cuda "${AMP[@]}" --impls auto reference triton --batch $batch \
                --size 800 1344 --repeats 3 --iters 2 --warmup 2 --out "$OUT/d_b$batch.json"
            cat "$OUT/d_b$batch.json" >> "$OUT/d_maskrcnn_$prec.json" 2>/dev/null
            rm -f "$OUT/d_b$batch.json"
        done
    done
    run "(d) DINO-L fl3 4-scale step, with_cp, default impl" 90 "$PYTHON" \
        $B/benchmark_train_step.py configs/det/dino_focalnet_l_fl3_4scale_12e.py --device cuda \
        --batch 2 --size 800 1333 --repeats 2 --iters 2 --warmup 1 --out "$OUT/d_dino_l.json"
    cat "$OUT/d_dino_l.json" >> "$LOG" 2>/dev/null && rm -f "$OUT/d_dino_l.json"
    # (e): inductor compiles each model once (about 40-60 s each on an H200): one limit per impl
    run "(e) 224 inference eager" 60 "$PYTHON" $B/benchmark_backbone.py --device cuda \
        --batch 128 --size 224 224 --focal-windows 3 --mode infer --dtype fp16 --compile off \
        --impls reference fast triton auto --repeats 3 --iters 5 --warmup 2 \
        --out "$OUT/e_infer224.json"
    run "(e) 224 inference compiled (auto, triton, timm)" 200 "$PYTHON" $B/benchmark_backbone.py \
        --device cuda --batch 128 --size 224 224 --focal-windows 3 --mode infer --dtype fp16 \
        --compile on --impls auto triton --models focalnet timm_focalnet --repeats 3 --iters 5 \
        --warmup 2 --out "$OUT/e_compiled.json"
    cat "$OUT/e_compiled.json" >> "$OUT/e_infer224.json" 2>/dev/null && rm -f "$OUT/e_compiled.json"
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
grep -E '^== (TIMEOUT|FAILED|SKIPPED)' "$LOG" && exit 1
exit 0
