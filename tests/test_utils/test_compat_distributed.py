"""The distributed and checkpoint-safety shims of segext.utils.compat.

Fast, in-process where possible (world-size-1 gloo groups); the SyncBN
maths and the kill-during-save check run 2-process / forked helpers in one
short subprocess that loads only ``compat.py`` (no mmdet/mmseg import).
"""
import os
import os.path as osp
import socket
import subprocess
import sys
import textwrap
import types

import pytest
import torch
import torch.distributed as torch_dist

from segext.utils import compat

COMPAT_PY = osp.abspath(compat.__file__)


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


@pytest.mark.parametrize('launcher', sorted(LAUNCHER_ENV))
def test_init_dist_on_cpu_is_gloo_without_cuda_calls(clean_env, launcher):
    from mmengine.dist import (broadcast, get_comm_device, init_dist,
                               sync_random_seed)
    _forbid_cuda(clean_env)
    _device(clean_env, 'cpu')
    said = []
    clean_env.setattr(compat, '_info', said.append)
    for key, value in LAUNCHER_ENV[launcher].items():
        clean_env.setenv(key, value)
    clean_env.setenv('MASTER_ADDR', '127.0.0.1')  # (slurm: no scontrol)
    clean_env.setenv('MASTER_PORT', str(_free_port()))

    init_dist(launcher, backend='nccl', timeout=60)  # a stock config's

    assert torch_dist.get_backend() == 'gloo'
    assert os.environ['RANK'] == '0' and os.environ['LOCAL_RANK'] == '0'
    assert get_comm_device() == torch.device('cpu')
    assert isinstance(sync_random_seed(), int)
    t = torch.tensor([3.0])
    broadcast(t)
    assert t.item() == 3.0
    assert said == ["no CUDA device: torch.distributed backend 'nccl' -> "
                    "'gloo' (CPU training)"]


def test_init_dist_with_cuda_is_upstream(clean_env):
    """With a GPU the patched functions run upstream's code: it calls
    torch.cuda.set_device(LOCAL_RANK) before init_process_group."""
    from mmengine.dist import utils as dist_utils
    calls = []

    def set_device(index):
        calls.append(index)
        raise _CudaCalled

    clean_env.setattr(torch.cuda, 'set_device', set_device)
    _device(clean_env, 'cuda')
    for key, value in LAUNCHER_ENV['pytorch'].items():
        clean_env.setenv(key, value)
    with pytest.raises(_CudaCalled):
        dist_utils._init_dist_pytorch('nccl')
    assert calls == [0]
    assert (dist_utils._init_dist_pytorch.__segext_upstream__.__module__ ==
            'mmengine.dist.utils')


def test_cpu_model_wrapper_cfg():
    from mmengine.model import MMDistributedDataParallel
    from mmengine.registry import MODEL_WRAPPERS
    assert compat.cpu_model_wrapper_cfg(None, True) == dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=True, device_ids=None)
    user = dict(type='MMDistributedDataParallel', device_ids=[0],
                broadcast_buffers=True)
    out = compat.cpu_model_wrapper_cfg(user)
    assert out['device_ids'] is None and out['broadcast_buffers'] is True
    assert user['device_ids'] == [0]  # the config is not modified
    assert compat.cpu_model_wrapper_cfg(
        dict(type=MMDistributedDataParallel))['device_ids'] is None

    @MODEL_WRAPPERS.register_module(force=True)
    class NotDDP(torch.nn.Module):

        def __init__(self, module):
            super().__init__()
            self.module = module

    assert 'device_ids' not in compat.cpu_model_wrapper_cfg(
        dict(type='NotDDP'))


def _one_process_group(monkeypatch):
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(_free_port()))
    torch_dist.init_process_group('gloo', rank=0, world_size=1)


def test_runner_wraps_cpu_model_with_syncbn(clean_env):
    """Runner.wrap_model under a process group: MMDistributedDataParallel
    with device_ids=None around a CPU model that keeps its SyncBN."""
    from mmengine.config import Config
    from mmengine.model import BaseModel, MMDistributedDataParallel
    from mmengine.optim import OptimWrapper
    from mmengine.runner import Runner

    class Net(BaseModel):

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.bn = torch.nn.SyncBatchNorm(4)

        def forward(self, inputs, data_samples=None, mode='loss'):
            return dict(loss=self.bn(self.conv(inputs)).square().mean())

    _forbid_cuda(clean_env)
    _device(clean_env, 'cpu')
    clean_env.setenv('LOCAL_RANK', '0')
    _one_process_group(clean_env)
    fake_runner = types.SimpleNamespace(
        distributed=True, cfg=Config(dict(find_unused_parameters=False)),
        logger=None)
    model = Runner.wrap_model(fake_runner, None, Net())
    assert isinstance(model, MMDistributedDataParallel)
    assert model.device_ids is None
    assert isinstance(model.module.bn, torch.nn.SyncBatchNorm)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    log_vars = model.train_step(dict(inputs=torch.rand(2, 3, 6, 6)), optim)
    assert torch.isfinite(log_vars['loss'])


SYNCBN_SCRIPT = r'''
import importlib.util, os, sys
import torch, torch.distributed as dist, torch.multiprocessing as mp

def load_compat():
    spec = importlib.util.spec_from_file_location('compat', sys.argv[1])
    compat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compat)
    compat._patch_sync_batchnorm()

CASES = [  # shape, affine, momentum, rank-0 share of the batch
    ((4, 3, 5, 6), True, 0.1, 2),
    ((5, 4, 7), False, None, 1),   # 1d input, uneven split, cumulative avg
]

def reference(shape, affine, momentum, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g) * 3 + 1
    dy = torch.randn(*shape, generator=g)
    bn_type = torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d
    bn = bn_type(shape[1], affine=affine, momentum=momentum)
    if affine:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5, generator=g)
            bn.bias.uniform_(-1, 1, generator=g)
    return x, dy, bn

def worker(rank, port):
    load_compat()
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=2)
    for i, (shape, affine, momentum, split) in enumerate(CASES):
        x, dy, bn = reference(shape, affine, momentum, i)
        sync = torch.nn.SyncBatchNorm(shape[1], affine=affine,
                                      momentum=momentum)
        sync.load_state_dict(bn.state_dict())
        for _ in range(2):  # two steps: running stats accumulate
            xr = x.clone().requires_grad_()
            out = bn(xr)
            (out * dy).sum().backward()
            part = slice(0, split) if rank == 0 else slice(split, None)
            xs = x[part].clone().requires_grad_()
            out_s = sync(xs)
            (out_s * dy[part]).sum().backward()
            tol = dict(atol=2e-5, rtol=1e-5)
            torch.testing.assert_close(out_s, out[part], **tol)
            torch.testing.assert_close(xs.grad, xr.grad[part], **tol)
            if affine:  # local parameter grads sum (DDP: average) to full
                for p, q in ((sync.weight, bn.weight), (sync.bias, bn.bias)):
                    g = p.grad.clone()
                    dist.all_reduce(g)
                    torch.testing.assert_close(g, q.grad, **tol)
                    p.grad = q.grad = None
        torch.testing.assert_close(sync.running_mean, bn.running_mean)
        torch.testing.assert_close(sync.running_var, bn.running_var)
        assert sync.num_batches_tracked.item() == 2
    dist.destroy_process_group()

if __name__ == '__main__':
    # fork: the children need no second import of torch
    mp.start_processes(worker, args=(int(sys.argv[2]), ), nprocs=2,
                       start_method='fork')
    print('SYNCBN OK')
'''


def _run_script(tmp_path, name, source, *args, timeout=180):
    script = tmp_path / name
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, str(script), COMPAT_PY, *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_cpu_syncbn_matches_batchnorm_on_the_whole_batch(tmp_path):
    """2 gloo processes with SyncBN on halves == BN on the whole batch:
    outputs, input gradients, summed parameter gradients, running stats."""
    out = _run_script(tmp_path, 'syncbn.py', SYNCBN_SCRIPT, _free_port())
    assert 'SYNCBN OK' in out


def test_syncbn_eval_and_no_group_take_upstream_path():
    bn = torch.nn.SyncBatchNorm(3).eval()
    x = torch.randn(2, 3, 4, 4)
    ref = torch.nn.functional.batch_norm(x, bn.running_mean, bn.running_var,
                                         bn.weight, bn.bias, False, 0.1,
                                         bn.eps)
    torch.testing.assert_close(bn(x), ref)
    assert torch.nn.SyncBatchNorm.forward.__segext_upstream__ is not None


# ----------------------------------------------------------- checkpoints
def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    from mmengine.fileio.backends import LocalBackend
    target = tmp_path / 'iter_2.pth'
    LocalBackend().put(b'old complete checkpoint', str(target))

    def fail(fd):
        raise OSError('disk full (simulated)')

    monkeypatch.setattr(os, 'fsync', fail)
    with pytest.raises(OSError, match='simulated'):
        LocalBackend().put(b'new checkpoint, half written', str(target))
    assert target.read_bytes() == b'old complete checkpoint'
    assert os.listdir(tmp_path) == ['iter_2.pth']  # no temp file left
    monkeypatch.undo()
    LocalBackend().put_text('text', str(tmp_path / 'sub' / 'last'))
    assert (tmp_path / 'sub' / 'last').read_text() == 'text'


KILL_SCRIPT = r'''
import importlib.util, os, random, signal, sys, time
import torch
from mmengine.runner.checkpoint import save_checkpoint

spec = importlib.util.spec_from_file_location('compat', sys.argv[1])
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)
if sys.argv[3] == 'patched':
    compat._patch_local_backend_put()
path = os.path.join(sys.argv[2], 'iter_x.pth')
big = {f'w{i}': torch.randn(1024, 1024) for i in range(6)}  # 24 MB
save_checkpoint(dict(meta=dict(iter=0), state_dict=big), path)
rng = random.Random(0)
torn = 0
for trial in range(int(sys.argv[4])):
    pid = os.fork()
    if pid == 0:  # the "trainer": saves over the same file, forever
        i = 1
        while True:
            save_checkpoint(dict(meta=dict(iter=i), state_dict=big), path)
            i += 1
    time.sleep(rng.uniform(0.05, 0.4))
    os.kill(pid, signal.SIGKILL)  # preemption, OOM killer, scancel -9
    os.waitpid(pid, 0)
    try:
        torch.load(path, map_location='cpu', weights_only=False)['meta']
    except Exception:
        torn += 1
        save_checkpoint(dict(meta=dict(iter=0), state_dict=big), path)
print(f'TORN {torn}')
'''


def test_kill_during_checkpoint_save_leaves_a_loadable_file(tmp_path):
    """SIGKILL a process in the middle of saving checkpoints over the same
    file, 5 times: with the shim the file always loads (without it, 3 of 10
    such kills left a torn file when this test was written)."""
    out = _run_script(tmp_path, 'kill.py', KILL_SCRIPT, tmp_path, 'patched',
                      5)
    assert 'TORN 0' in out, out


def _fake_runner(tmp_path):
    from mmengine.logging import MessageHub
    saved = []

    def save_checkpoint(out_dir, filename, *args, **kwargs):
        if kwargs.get('meta', {}).get('kill'):
            raise KeyboardInterrupt('killed while saving (simulated)')
        path = osp.join(out_dir, filename)
        with open(path, 'wb') as f:
            f.write(b'ckpt')
        saved.append(filename)

    return types.SimpleNamespace(
        work_dir=str(tmp_path), save_checkpoint=save_checkpoint,
        message_hub=MessageHub.get_instance('compat-dist-test')), saved


def _hook(tmp_path):
    from collections import deque

    from mmengine.fileio import get_file_backend
    from mmengine.hooks import CheckpointHook
    hook = CheckpointHook(interval=2, by_epoch=False, max_keep_ckpts=1)
    hook.out_dir = str(tmp_path)
    hook.file_backend = get_file_backend(str(tmp_path))
    hook.keep_ckpt_ids = deque([], 1)  # as before_train sets it
    return hook


def test_checkpoint_hook_removes_outdated_only_after_saving(tmp_path):
    from mmengine.runner import find_latest_checkpoint
    runner, _ = _fake_runner(tmp_path)
    hook = _hook(tmp_path)
    hook._save_checkpoint_with_step(runner, 2, dict())
    assert sorted(os.listdir(tmp_path)) == ['iter_2.pth', 'last_checkpoint']
    # killed while writing iter_4 (max_keep_ckpts=1): upstream had already
    # deleted iter_2; now it is still there, and resumable
    with pytest.raises(KeyboardInterrupt):
        hook._save_checkpoint_with_step(runner, 4, dict(kill=True))
    assert (tmp_path / 'iter_2.pth').is_file()
    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path /
                                                        'iter_2.pth')


def test_checkpoint_hook_still_removes_outdated(tmp_path):
    runner, saved = _fake_runner(tmp_path)
    hook = _hook(tmp_path)
    for step in (2, 4):
        hook._save_checkpoint_with_step(runner, step, dict())
    # what a save killed mid-write leaves: the atomic writer's temp file
    (tmp_path / '.iter_6.pth.4242.0123abcd.tmp').write_bytes(b'torn')
    hook._save_checkpoint_with_step(runner, 6, dict())
    assert saved == ['iter_2.pth', 'iter_4.pth', 'iter_6.pth']
    assert sorted(os.listdir(tmp_path)) == ['iter_6.pth', 'last_checkpoint']


@pytest.mark.parametrize('pointer', ['', 'iter_99.pth'])
def test_find_latest_checkpoint_survives_a_bad_pointer(tmp_path, pointer):
    import mmengine.runner.runner as runner_module
    for name in ('iter_2.pth', 'iter_10.pth', 'iter_4.pth', 'best.pth'):
        (tmp_path / name).write_bytes(b'x')
    (tmp_path / 'last_checkpoint').write_text(
        str(tmp_path / pointer) if pointer else '')
    # the name Runner.load_or_resume uses
    assert runner_module.find_latest_checkpoint(str(tmp_path)) == str(
        tmp_path / 'iter_10.pth')


def test_find_latest_checkpoint_as_upstream_otherwise(tmp_path):
    from mmengine.runner import find_latest_checkpoint
    assert find_latest_checkpoint(str(tmp_path)) is None
    (tmp_path / 'iter_4.pth').write_bytes(b'x')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path /
                                                        'iter_4.pth')


def test_apply_is_idempotent_and_keeps_upstream():
    from mmengine.dist import utils as dist_utils
    from mmengine.runner import Runner
    before = (dist_utils._init_dist_slurm, Runner.wrap_model,
              torch.nn.SyncBatchNorm.forward)
    compat.apply()
    compat.apply()
    assert (dist_utils._init_dist_slurm, Runner.wrap_model,
            torch.nn.SyncBatchNorm.forward) == before
    for fn in before:
        assert not hasattr(fn.__segext_upstream__, '__segext_upstream__')
