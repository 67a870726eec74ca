"""CPUSyncBatchNorm: N gloo processes with SyncBN on parts of a batch
equal BatchNorm on the whole batch (outputs, input gradients, summed
parameter gradients, running statistics); outside training, or without a
process group, it is BatchNorm; the conversion keeps the state dict."""
import os
import socket
import subprocess
import sys
import textwrap

import torch

from segext.models.layers import CPUSyncBatchNorm


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


SYNCBN_SCRIPT = r'''
import os, sys
import torch, torch.distributed as dist, torch.multiprocessing as mp
from segext.models.layers.sync_bn import CPUSyncBatchNorm

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
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=2)
    for i, (shape, affine, momentum, split) in enumerate(CASES):
        x, dy, bn = reference(shape, affine, momentum, i)
        sync = CPUSyncBatchNorm(shape[1], affine=affine, momentum=momentum)
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
    mp.start_processes(worker, args=(int(sys.argv[1]), ), nprocs=2,
                       start_method='fork')
    print('SYNCBN OK')
'''


def test_two_processes_match_batchnorm_on_the_whole_batch(tmp_path):
    script = tmp_path / 'syncbn.py'
    script.write_text(textwrap.dedent(SYNCBN_SCRIPT))
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, str(script), str(_free_port())],
                          capture_output=True, text=True, timeout=180,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert 'SYNCBN OK' in proc.stdout


def test_eval_and_no_process_group_are_batchnorm():
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.running_mean.uniform_()
        bn.weight.uniform_(0.5, 1.5)
    sync = CPUSyncBatchNorm(3)
    sync.load_state_dict(bn.state_dict())
    x = torch.randn(2, 3, 4, 4)
    for mode in ('eval', 'train'):  # (train: no process group here)
        getattr(bn, mode)()
        getattr(sync, mode)()
        torch.testing.assert_close(sync(x), bn(x), rtol=0, atol=0)
    torch.testing.assert_close(sync.running_var, bn.running_var)


def test_conversion_keeps_parameters_buffers_and_keys():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 1),
        torch.nn.Sequential(torch.nn.SyncBatchNorm(4, momentum=0.3)),
        torch.nn.BatchNorm2d(4))
    keys = list(model.state_dict())
    old = model[1][0]
    converted = CPUSyncBatchNorm.convert_sync_batchnorm(model)
    new = converted[1][0]
    assert type(new) is CPUSyncBatchNorm and new.momentum == 0.3
    assert new.weight is old.weight and new.running_mean is old.running_mean
    assert type(converted[2]) is torch.nn.BatchNorm2d
    assert list(converted.state_dict()) == keys


def test_registered_as_a_norm_layer():
    from mmcv.cnn import build_norm_layer
    name, layer = build_norm_layer(dict(type='CPUSyncBN'), 8)
    assert name == 'bn' and type(layer) is CPUSyncBatchNorm
