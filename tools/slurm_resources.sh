# Sourced by tools/slurm_train.sh and tools/slurm_test.sh (not run directly).
# In: PARTITION, GPUS, GPUS_PER_NODE, CPUS_PER_TASK, TASKS_PER_NODE, PORT.
# Out: SRUN_RESOURCES (array of srun options for the tasks' resources).
#
# GPU mode (upstream's): one task per GPU, --gres=gpu:GPUS_PER_NODE.
# CPU mode, when GPUS_PER_NODE=0 or sinfo says the partition has no GPU GRES
# (%G): never --gres=gpu; GPUS tasks, TASKS_PER_NODE of them per node when
# set; CUDA_VISIBLE_DEVICES is emptied so every task takes the CPU path
# (gloo) even on nodes that do have GPUs, and OMP_NUM_THREADS defaults to
# CPUS_PER_TASK.
SRUN_RESOURCES=(--ntasks="${GPUS}" --cpus-per-task="${CPUS_PER_TASK}")
# GRES of the partition's nodes, e.g. "gpu:8(S:0-1)" or "(null)"; empty when
# sinfo failed -- then GPU mode, as upstream, never CPU training by accident.
PARTITION_GRES=$(timeout 30 sinfo -h -p "${PARTITION}" -o '%G' 2>/dev/null |
                 sort -u | tr '\n' ' ')
if [ "${GPUS_PER_NODE}" = 0 ] ||
        { [ -n "${PARTITION_GRES// /}" ] &&
          [[ "${PARTITION_GRES}" != *gpu* ]]; }; then
    echo "$(basename "$0"): CPU mode (GPUS_PER_NODE=${GPUS_PER_NODE}," \
         "GRES of ${PARTITION}: ${PARTITION_GRES:-none}): ${GPUS} CPU" \
         "task(s), gloo" >&2
    if [ -n "${TASKS_PER_NODE:-}" ]; then
        SRUN_RESOURCES+=(--ntasks-per-node="${TASKS_PER_NODE}")
    elif [ "${GPUS_PER_NODE}" != 0 ]; then
        SRUN_RESOURCES+=(--ntasks-per-node="${GPUS_PER_NODE}")
    fi
    export CUDA_VISIBLE_DEVICES=""
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${CPUS_PER_TASK}}"
else
    SRUN_RESOURCES+=(--gres=gpu:"${GPUS_PER_NODE}"
                     --ntasks-per-node="${TASKS_PER_NODE:-${GPUS_PER_NODE}}")
fi
# PORT: the rendezvous port (mmengine reads MASTER_PORT; default 29500).
if [ -n "${PORT:-}" ]; then
    export MASTER_PORT="${PORT}"
fi
