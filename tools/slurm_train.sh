#!/usr/bin/env bash
# Training on a Slurm cluster (mmdet's interface):
#
#   [GPUS=8] [GPUS_PER_NODE=8] bash tools/slurm_train.sh \
#       PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
#
# Env knobs (as upstream): GPUS (8, total tasks), GPUS_PER_NODE (8),
# CPUS_PER_TASK (5), SRUN_ARGS (extra srun options), PORT (rendezvous port,
# default 29500).  segext: GPUS_PER_NODE=0, or a partition without GPU GRES,
# runs GPUS CPU tasks with gloo and no --gres (TASKS_PER_NODE spreads them
# over nodes); see tools/slurm_resources.sh and docs/distributed.md.
# Preemption: pass --resume (no value) so a requeued job continues from
# WORK_DIR/last_checkpoint.
set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PY_ARGS=("${@:5}")
PYTHON=${PYTHON:-python}
TOOLS=$(dirname "$0")

source "${TOOLS}/slurm_resources.sh"

PYTHONPATH="${TOOLS}/..":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    "${SRUN_RESOURCES[@]}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "${PYTHON}" -u "${TOOLS}/train.py" "${CONFIG}" --work-dir="${WORK_DIR}" \
    --launcher="slurm" "${PY_ARGS[@]}"
