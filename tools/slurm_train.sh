#!/usr/bin/env bash
# Training on a slurm cluster: one task per GPU (--launcher slurm), as a batch job that survives
# preemption and the time limit.
#   bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
#   e.g. GPUS=16 bash tools/slurm_train.sh gpu focalnet_t configs/maskrcnn_focalnet_t_3x.py work_dirs/maskrcnn_focalnet_t_3x
# From a login node this submits a batch job (sbatch --requeue --signal=USR1@SIGNAL_SECONDS; its
# log is WORK_DIR/slurm-<job id>.out) and returns. Slurm sends USR1 SIGNAL_SECONDS before the
# time limit, and SIGTERM on preemption: training saves a checkpoint at the current iteration
# and exits 0; the job is then requeued (by this script, or by slurm on preemption) and the
# requeued run continues with --resume. Inside an allocation (salloc, or the batch job itself)
# it runs srun directly.
# Environment: GPUS (8, total), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SIGNAL_SECONDS (180: time
# to finish an iteration and write a checkpoint), SBATCH_ARGS / SRUN_ARGS (extra options, e.g.
# "--time=3-00:00:00" / "--quotatype=auto"), PYTHON (as in dist_train.sh).
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: bash $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SIGNAL_SECONDS=${SIGNAL_SECONDS:-180}
SBATCH_ARGS=${SBATCH_ARGS:-""}
SRUN_ARGS=${SRUN_ARGS:-""}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi

if [ -z "${SLURM_JOB_ID:-}" ]; then
    mkdir -p "$WORK_DIR"
    # shellcheck disable=SC2086  # SBATCH_ARGS is a list of options
    exec sbatch -p "$PARTITION" \
        --job-name="$JOB_NAME" \
        --gres=gpu:"$GPUS_PER_NODE" \
        --ntasks="$GPUS" \
        --ntasks-per-node="$GPUS_PER_NODE" \
        --cpus-per-task="$CPUS_PER_TASK" \
        --requeue \
        --signal=USR1@"$SIGNAL_SECONDS" \
        --open-mode=append \
        --output="$WORK_DIR/slurm-%j.out" \
        --export=ALL,FOCALNET_SLURM_BATCH=1 \
        ${SBATCH_ARGS} \
        "$ROOT/tools/slurm_train.sh" "$@"
fi

RESUME=()
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then
    RESUME=(--resume)  # a requeued job: continue from the newest readable checkpoint
fi
# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher=slurm "${@:5}" ${RESUME[@]+"${RESUME[@]}"}

# stopped on USR1/SIGTERM with a checkpoint (train.py exits 0 and leaves this file): run again
if [ -n "${FOCALNET_SLURM_BATCH:-}" ] && [ -f "$WORK_DIR/stopped_by_signal" ]; then
    echo "training stopped with a checkpoint ($(cat "$WORK_DIR/stopped_by_signal")); requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
fi
