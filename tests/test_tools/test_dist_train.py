"""tools/dist_train.sh and tools/dist_test.sh on CPU (torchrun + gloo).

Real multi-process runs of the real tools on a tiny generated copy of the
synthetic data:

* 2 processes x batch 1 end with the weights of 1 process x batch 2
  (GroupNorm model; shuffled, seeded sampler), and validate identically;
* dist_test.sh (2 processes) reproduces those metrics from the checkpoint;
* 2 "nodes" of 1 process each (two torchrun launchers, NNODES=2,
  NODE_RANK=0/1) train the SyncBN config, and match 1 process x batch 2
  with plain BN -- the statistics really are synchronised over gloo;
* DRN-C-58 (SyncBN) takes DDP steps without ``find_unused_parameters``.

segext's runner (``SegextRunner``, which tools/train.py selects) makes the
CPU path work (a gloo process group instead of the configs' nccl,
``CPUDistributedDataParallel`` with ``device_ids=None``, ``CPUSyncBatchNorm``);
each run's log must say so.
"""
import os.path as osp
import sys

import pytest

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import dist_helpers as H  # noqa: E402

TIMEOUT = 300  # per launch; a run takes ~15 s on 2 idle cores
GLOO = "torch.distributed backend 'nccl' -> 'gloo'"
CPU_DDP = 'CPUDistributedDataParallel wraps the CPU model (device_ids=None)'
CPU_SYNCBN = 'SyncBatchNorm -> CPUSyncBatchNorm ('


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return H.generate_data(H.session_dir(tmp_path_factory, 'ddp_data'))


@pytest.fixture(scope='module')
def references_started(tmp_path_factory, data_root):
    """The single-process references, running alongside the first test's
    2-process run; :func:`references` waits for them."""
    started = H.start_reference_runs(tmp_path_factory, data_root,
                                     ('gn', 'bn'))
    yield started
    for proc in started[1]:
        proc.kill()


@pytest.fixture(scope='module')
def references(references_started):
    return H.wait_references(references_started)


def dist_train(config, gpus, work_dir, opts, log, **env):
    cmd = ['bash', osp.join(H.ROOT, 'tools', 'dist_train.sh'), config,
           str(gpus), '--work-dir', str(work_dir), *opts]
    return H.Proc(cmd, log, env=H.tool_env(**env))


@pytest.fixture(scope='module')
def gn_two_procs(tmp_path_factory, data_root, references_started):
    work = tmp_path_factory.mktemp('gn_2procs')
    proc = dist_train(H.GN_CONFIG, 2, work,
                      H.data_options(data_root, 1, 6, 6),
                      str(work / 'run.log'), PORT=H.free_port())
    proc.wait(TIMEOUT)
    return str(work), proc.text()


def test_dist_train_two_processes_match_one(gn_two_procs, references):
    work, log = gn_two_procs
    assert log.count(GLOO) == 2 and CPU_DDP in log, log[-3000:]
    ours = osp.join(work, 'iter_6.pth')
    ref = osp.join(references['gn'], 'iter_6.pth')
    assert H.checkpoint_iter(ours) == 6
    diff = H.max_abs_diff(ours, ref)
    moved = H.max_abs_diff(ref, osp.join(references['gn'], 'iter_2.pth'))
    print(f'\n[dist_train 2 procs x batch 1 vs 1 proc x batch 2, 6 SGD '
          f'steps] max |w_ddp - w_single| = {diff:.3e} (weights moved by '
          f'up to {moved:.3e} since iter 2; tolerance {H.ATOL:g})')
    assert moved > 1e-3, 'the comparison needs weights that change'
    assert diff < H.ATOL
    # distributed validation (1 image per process) == single process
    assert H.metrics(work, step=6) == H.metrics(references['gn'], step=6)


def test_dist_test_two_processes(gn_two_procs, data_root, tmp_path):
    """dist_test.sh: the checkpoint's metrics, as validated in training."""
    work, _ = gn_two_procs
    cmd = ['bash', osp.join(H.ROOT, 'tools', 'dist_test.sh'), H.GN_CONFIG,
           osp.join(work, 'iter_6.pth'), '2', '--work-dir', str(tmp_path),
           *H.data_options(data_root)]
    proc = H.run(cmd, str(tmp_path / 'test.log'), TIMEOUT,
                 env=H.tool_env(PORT=H.free_port()))
    assert proc.text().count(GLOO) == 2
    assert H.metrics(str(tmp_path)) == H.metrics(work, step=6)


def test_two_nodes_syncbn_matches_single_process_bn(tmp_path, data_root,
                                                    references):
    """NNODES=2 on localhost: two launchers of one process each."""
    port = H.free_port()
    opts = H.data_options(data_root, 1, 6, 1000)
    nodes = [
        dist_train(H.SYNCBN_CONFIG, 1, tmp_path, opts,
                   str(tmp_path / f'node{rank}.log'), NNODES=2,
                   NODE_RANK=rank, PORT=port, MASTER_ADDR='127.0.0.1')
        for rank in (0, 1)
    ]
    try:
        for node in nodes:
            node.wait(TIMEOUT)
    finally:
        for node in nodes:
            node.kill()
    log0 = nodes[0].text()
    assert GLOO in log0 and CPU_SYNCBN in log0, log0[-3000:]
    ours = osp.join(str(tmp_path), 'iter_6.pth')
    ref = osp.join(references['bn'], 'iter_6.pth')
    diff = H.max_abs_diff(ours, ref)
    print(f'\n[2 nodes x 1 proc, SyncBN (gloo) vs 1 proc x batch 2, BN; 6 '
          f'SGD steps] max |w - w_ref| over weights and running stats = '
          f'{diff:.3e} (tolerance {H.ATOL:g})')
    assert diff < H.ATOL


def test_drn_c58_ddp_without_find_unused_parameters(tmp_path, data_root):
    """With an unused parameter DDP stops at the 2nd iteration ("Expected to
    have finished reduction in the prior iteration")."""
    proc = dist_train(H.DRN_CONFIG, 2, tmp_path,
                      H.data_options(data_root, 1),
                      str(tmp_path / 'run.log'), PORT=H.free_port())
    proc.wait(TIMEOUT)
    log = proc.text()
    assert 'find_unused_parameters = False' in log
    assert 'Iter(train) [2/2]' in log and CPU_SYNCBN in log
    assert H.checkpoint_iter(str(tmp_path / 'iter_2.pth')) == 2
