"""SegextRunner on CPU processes: the gloo process group it creates before
``Runner.setup_env`` (no CUDA call on any launcher's path), upstream's path
when there is an accelerator, and the CPU DDP wrapper it builds.

Fast and in-process (world-size-1 gloo groups); the 2-process maths of
CPUSyncBatchNorm is in tests/test_models/test_layers/test_sync_bn.py.
"""
import os
import os.path as osp
import socket
import sys

import pytest
import torch
import torch.distributed as torch_dist

from segext.engine import CPUDistributedDataParallel
from segext.engine.runner import cpu_model_wrapper_cfg
from segext.models.layers import CPUSyncBatchNorm

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from toy_runner import toy_runner  # noqa: E402


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class _CudaCalled(RuntimeError):
    pass


def _forbid_cuda(monkeypatch):
    """Every CUDA entry point the distributed path could touch raises."""

    def forbidden(name):  # one function per name (torch._dynamo maps them)

        def boom(*args, **kwargs):
            raise _CudaCalled(f'torch.cuda.{name} was called on the CPU path')

        return boom

    for name in ('set_device', 'current_device', 'device_count',
                 'synchronize', 'get_device_properties'):
        monkeypatch.setattr(torch.cuda, name, forbidden(name))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)


def _device(monkeypatch, device):
    import mmengine.device.utils as device_utils
    monkeypatch.setattr(device_utils, 'DEVICE', device)


@pytest.fixture
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith(('SLURM_', 'OMPI_')) or key in (
                'RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                'MASTER_PORT'):
            monkeypatch.delenv(key)
    # init_dist sets the multiprocessing start method once per process
    monkeypatch.setattr(torch.multiprocessing, 'set_start_method',
                        lambda *a, **k: None)
    yield monkeypatch
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


LAUNCHER_ENV = {
    'pytorch': dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0'),
    # no SLURM_LOCALID: upstream would divide by torch.cuda.device_count()
    'slurm': dict(SLURM_PROCID='0', SLURM_NTASKS='1',
                  SLURM_NODELIST='localhost'),
    'mpi': dict(OMPI_COMM_WORLD_LOCAL_RANK='0', OMPI_COMM_WORLD_SIZE='1',
                OMPI_COMM_WORLD_RANK='0'),
}


def _runner(clean_env, tmp_path, launcher, device='cpu', **kwargs):
    """A SegextRunner built under ``launcher``'s environment (world size 1)
    on a machine whose device is ``device``."""
    _device(clean_env, device)
    for key, value in LAUNCHER_ENV[launcher].items():
        clean_env.setenv(key, value)
    clean_env.setenv('MASTER_ADDR', '127.0.0.1')  # (slurm: no scontrol)
    clean_env.setenv('MASTER_PORT', str(_free_port()))
    return toy_runner(tmp_path, launcher=launcher,
                      env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=60)),
                      **kwargs)


@pytest.mark.parametrize('launcher', sorted(LAUNCHER_ENV))
def test_cpu_processes_get_gloo_cpu_ddp_and_synced_bn(clean_env, tmp_path,
                                                      launcher):
    """A stock config's nccl on a machine without accelerator: gloo, no
    CUDA call, CPUDistributedDataParallel around CPUSyncBatchNorm."""
    from mmengine.dist import broadcast, get_comm_device, sync_random_seed
    _forbid_cuda(clean_env)
    runner = _runner(clean_env, tmp_path, launcher, max_iters=2)

    assert torch_dist.get_backend() == 'gloo'
    assert os.environ['RANK'] == '0' and os.environ['LOCAL_RANK'] == '0'
    assert get_comm_device() == torch.device('cpu')
    assert isinstance(sync_random_seed(), int)
    t = torch.tensor([3.0])
    broadcast(t)
    assert t.item() == 3.0
    model = runner.model
    assert isinstance(model, CPUDistributedDataParallel)
    assert model.device_ids is None
    assert type(model.module.bn) is CPUSyncBatchNorm
    runner.train()  # DDP steps on the CPU
    assert runner.iter == 2


def test_with_an_accelerator_the_path_is_upstream(clean_env, tmp_path):
    """With a GPU, SegextRunner runs upstream's init_dist: it calls
    torch.cuda.set_device(LOCAL_RANK) before init_process_group."""
    calls = []

    def set_device(index):
        calls.append(index)
        raise _CudaCalled

    clean_env.setattr(torch.cuda, 'set_device', set_device)
    with pytest.raises(_CudaCalled):
        _runner(clean_env, tmp_path, 'pytorch', device='cuda')
    assert calls == [0]
    assert not torch_dist.is_initialized()


def test_cpu_model_wrapper_cfg():
    from mmengine.model import MMDistributedDataParallel
    from mmengine.registry import MODEL_WRAPPERS
    assert cpu_model_wrapper_cfg(None, True) == dict(
        type='CPUDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=True, device_ids=None)
    user = dict(type='MMDistributedDataParallel', device_ids=[0],
                broadcast_buffers=True)
    out = cpu_model_wrapper_cfg(user)
    assert out['type'] == 'CPUDistributedDataParallel'
    assert out['device_ids'] is None and out['broadcast_buffers'] is True
    assert user['device_ids'] == [0]  # the config is not modified
    assert cpu_model_wrapper_cfg(
        dict(type=MMDistributedDataParallel))['device_ids'] is None

    @MODEL_WRAPPERS.register_module(force=True)
    class OwnDDP(torch.nn.parallel.DistributedDataParallel):
        pass

    @MODEL_WRAPPERS.register_module(force=True)
    class NotDDP(torch.nn.Module):

        def __init__(self, module):
            super().__init__()
            self.module = module

    assert cpu_model_wrapper_cfg(dict(type='OwnDDP')) == dict(
        type='OwnDDP', device_ids=None)  # a user's DDP: kept, on the CPU
    assert 'device_ids' not in cpu_model_wrapper_cfg(dict(type='NotDDP'))


def test_a_finished_cpu_run_destroys_its_gloo_group(clean_env, tmp_path):
    """tools/train.py and tools/test.py end a run with
    destroy_cpu_process_group: a gloo group is destroyed (gloo's threads
    otherwise can abort the process at exit), nothing else is touched."""
    from segext.engine.dist import destroy_cpu_process_group
    assert not destroy_cpu_process_group()  # no group: nothing to do
    runner = _runner(clean_env, tmp_path, 'pytorch', max_iters=1)
    runner.train()
    assert torch_dist.is_initialized()
    assert destroy_cpu_process_group()
    assert not torch_dist.is_initialized()


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_the_tools_close_the_group_after_the_run(tool):
    """Both tools call it after the runner's train() / test(), once the
    runner is dropped (read from their source: a 2-process run of each is
    in test_dist_train.py)."""
    src = open(osp.join(osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))), 'tools', f'{tool}.py')).read()
    body = src[src.index('def main('):]
    # the runner (its DDP wrapper holds the group) is dropped first
    assert body.index(f'runner.{tool}()') < body.index('del runner') < \
        body.index('destroy_cpu_process_group()')
