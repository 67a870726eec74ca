"""The process group of a CPU-only multi-process run (gloo).

mmengine 0.10.7's ``init_dist`` assumes one GPU per process: its
``_init_dist_pytorch``/``_slurm``/``_mpi`` call ``torch.cuda.set_device``
(an error on a CPU build of torch, "no CUDA GPUs" on a CUDA build without a
GPU), the Slurm path falls back to ``proc_id % torch.cuda.device_count()``
(division by zero), and every stock config asks for ``nccl``.  mmengine
skips ``init_dist`` when a process group already exists, so
:class:`segext.engine.SegextRunner` creates the group with
:func:`init_cpu_process_group` before ``Runner.setup_env`` when there is no
accelerator.  The environment set-up per launcher is upstream's, without the
device calls.  Remove when mmengine supports CPU DDP (not up to 0.10.7).
"""
from __future__ import annotations

import datetime
import gc
import os
import subprocess

from mmengine.device import get_device
from mmengine.logging import print_log
from torch import distributed as torch_dist
from torch import multiprocessing as mp

__all__ = [
    'no_accelerator', 'cpu_backend', 'init_cpu_process_group',
    'destroy_cpu_process_group'
]

#: backends that need an accelerator; mapped to gloo on CPU
_ACCEL_BACKENDS = ('nccl', 'hccl', 'cncl', 'mccl', 'smddp')


def no_accelerator() -> bool:
    """True when mmengine puts the model on the CPU (no CUDA/NPU/MLU/MPS/
    MUSA device, or ``CUDA_VISIBLE_DEVICES=''``)."""
    return get_device() == 'cpu'


def cpu_backend(backend: str) -> str:
    """The torch.distributed backend for a machine without accelerator."""
    if backend in _ACCEL_BACKENDS:
        print_log(f'no accelerator: torch.distributed backend {backend!r} '
                  f"-> 'gloo' (CPU training)", logger='current')
        return 'gloo'
    return backend


def _env_pytorch(**_):
    """``torchrun``: RANK/WORLD_SIZE/MASTER_* are in the environment."""


def _env_slurm(port=None, **_):
    """``srun``: upstream's environment set-up, without the device."""
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    node_list = os.environ['SLURM_NODELIST']
    local_rank = int(os.environ.get('SLURM_LOCALID', 0))
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1')
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['LOCAL_RANK'] = str(local_rank)
    os.environ['RANK'] = str(proc_id)


def _env_mpi(**_):
    """``mpirun`` (Open MPI): upstream's environment set-up, no device."""
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        raise KeyError('The environment variable MASTER_ADDR is not set')
    os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
    os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
    os.environ.setdefault('LOCAL_RANK',
                          os.environ['OMPI_COMM_WORLD_LOCAL_RANK'])


_LAUNCHER_ENV = dict(pytorch=_env_pytorch, slurm=_env_slurm, mpi=_env_mpi)


def init_cpu_process_group(launcher: str, backend: str = 'nccl',
                           init_backend: str = 'torch', **kwargs) -> bool:
    """``mmengine.dist.init_dist`` for CPU processes; returns False (and
    does nothing) for an ``init_backend`` other than torch's, which stays
    upstream's.  ``kwargs`` are ``env_cfg.dist_cfg``'s (``timeout`` in
    seconds, ``port`` for Slurm, ...)."""
    if init_backend != 'torch':
        return False
    if launcher not in _LAUNCHER_ENV:
        raise ValueError(f'Invalid launcher type: {launcher}')
    port = kwargs.pop('port', None)
    if kwargs.get('timeout') is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')  # as init_dist does
    _LAUNCHER_ENV[launcher](port=port)
    torch_dist.init_process_group(backend=cpu_backend(backend), **kwargs)
    return True


def destroy_cpu_process_group() -> bool:
    """Destroy the default gloo process group, if any, at the end of a run.

    PyTorch's documented shutdown ("call destroy_process_group() near the
    end of main()"); mmengine 0.10.7 never calls it. Without it gloo's
    worker threads can outlive the interpreter, and a finished run aborts
    at exit now and then ("terminate called without an active exception",
    SIGABRT, exit code != 0; pytorch/pytorch#190489). segext's
    ``tools/train.py`` and ``tools/test.py`` call this after the run, once
    they have dropped the runner (its DDP wrapper and reducer hold the
    group, whose threads are joined only when its last reference goes): a
    barrier (no rank closes its connections while another still talks to
    it), then the destroy. Only
    gloo groups are destroyed: an NCCL group (GPUs) is left as upstream
    leaves it. Returns whether a group was destroyed. Can go when mmengine
    or torch destroy the group at exit.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return False
    if torch_dist.get_backend() != 'gloo':
        return False
    # every rank done communicating before any rank tears its pairs down
    torch_dist.barrier()
    # the group's C++ object (and its threads) goes only with its last
    # reference: the caller drops its runner (DDP holds the group) first
    gc.collect()
    torch_dist.destroy_process_group()
    return True
