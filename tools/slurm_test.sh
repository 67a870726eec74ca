#!/usr/bin/env bash
# Testing on a Slurm cluster (mmdet's interface):
#
#   [GPUS=8] [GPUS_PER_NODE=8] bash tools/slurm_test.sh \
#       PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
#
# Env knobs and CPU mode as tools/slurm_train.sh.
set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
PY_ARGS=("${@:5}")
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
TOOLS=$(dirname "$0")

source "${TOOLS}/slurm_resources.sh"

PYTHONPATH="${TOOLS}/..":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    "${SRUN_RESOURCES[@]}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "${PYTHON}" -u "${TOOLS}/test.py" "${CONFIG}" "${CHECKPOINT}" \
    --launcher="slurm" "${PY_ARGS[@]}"
