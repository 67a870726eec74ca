#!/usr/bin/env bash
# Distributed training on one or more machines with torchrun (mmdet/mmseg's
# interface):
#
#   bash tools/dist_train.sh CONFIG GPUS [train.py args...]
#
# GPUS is the number of processes on THIS machine.  Without CUDA they are CPU
# processes: segext's runner (runner_type='SegextRunner', which train.py
# selects when the config names no runner) creates a gloo process group and
# wraps the model in CPUDistributedDataParallel (device_ids=None, SyncBN
# synchronised over gloo); with CUDA the path is upstream's (nccl, one GPU
# per process).  See docs/distributed.md.
#
# Env knobs (as upstream): NNODES (1), NODE_RANK (0), PORT (29500),
# MASTER_ADDR (127.0.0.1; on multi-node: the address of node 0, reachable
# from every node), PYTHON (python).  Multi-node: run the same command on
# every node with the same NNODES/MASTER_ADDR/PORT and NODE_RANK=0..NNODES-1.
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
