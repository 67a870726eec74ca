"""Helpers shared by test_dist_train.py and test_slurm.py (not a test file).

Runs of the real tools in subprocesses on a tiny generated copy of the
synthetic data, the single-process reference runs they are compared with,
and the comparison itself.  Every subprocess runs in its own process group
and is killed as a group on timeout, so no worker outlives a test.
"""
import glob
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
import time

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'tests', 'data', 'configs')
GN_CONFIG = osp.join(CONFIGS, 'tiny-fcn-gn_ddp_synthetic.py')
SYNCBN_CONFIG = osp.join(CONFIGS, 'tiny-fcn-syncbn_ddp_synthetic.py')
DRN_CONFIG = osp.join(CONFIGS, 'drn-c-58_ddp_synthetic.py')

#: Weights after N steps of 2 processes x batch 1 vs 1 process x batch 2.
#: Only the order of float32 summation differs (gloo's all-reduce of the
#: two gradients vs the batch-2 reduction), and that noise grows with the
#: steps (SGD, momentum 0.9, lr 0.05).  Measured on the tiny configs: 6e-8
#: (GN) and 7e-7 (SyncBN) after 6 steps, 3e-6 after 16, while the weights
#: move by ~0.1-0.3 and a real error is large (BN not synchronised: 0.16).
ATOL = 1e-5  # up to 6 steps
ATOL_16 = 1e-4  # 16 steps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tool_env(**extra):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1',
               PYTHON=sys.executable)
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    env.pop('SEGEXT_DEBUG', None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def data_options(data_root, batch_size=None, max_iters=None,
                 val_interval=None, extra=()):
    """``--cfg-options`` for the tiny configs on ``data_root``."""
    opts = [f'{split}_dataloader.dataset.data_root={data_root}/'
            for split in ('train', 'val', 'test')]
    if batch_size is not None:
        opts.append(f'train_dataloader.batch_size={batch_size}')
    if max_iters is not None:
        opts.append(f'train_cfg.max_iters={max_iters}')
    if val_interval is not None:
        opts.append(f'train_cfg.val_interval={val_interval}')
    return ['--cfg-options'] + opts + list(extra)


class Proc:
    """A subprocess in its own session: output to a log file, killed as a
    process group on timeout."""

    def __init__(self, args, log, env=None, cwd=ROOT):
        self.args, self.log = args, log
        self._out = open(log, 'w')
        self.popen = subprocess.Popen(
            args, cwd=cwd, env=env or tool_env(), stdout=self._out,
            stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout, check=True):
        """Wait (again: idempotent) and check the exit status."""
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f'timed out after {timeout}s: {self.args}\n{self.tail()}')
        finally:
            self._out.close()
        if check and rc != 0:
            raise AssertionError(
                f'exit {rc}: {" ".join(map(str, self.args))}\n{self.tail()}')
        return rc

    def kill(self):
        """Kill the process group (a no-op once the process has ended)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait()
        self._out.close()

    def tail(self, n=6000):
        with open(self.log, errors='replace') as f:
            return f.read()[-n:]

    def text(self):
        with open(self.log, errors='replace') as f:
            return f.read()


def run(args, log, timeout, env=None, check=True):
    proc = Proc(args, log, env=env)
    proc.wait(timeout, check=check)
    return proc


def train_cmd(config, work_dir, opts, *extra):
    return [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config,
            '--work-dir', str(work_dir), *extra, *opts]


def state_dict(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def max_abs_diff(ckpt_a, ckpt_b):
    """Largest |a - b| over the float tensors of two checkpoints' weights
    (and the key sets must match)."""
    a, b = state_dict(ckpt_a)['state_dict'], state_dict(ckpt_b)['state_dict']
    assert set(a) == set(b), set(a) ^ set(b)
    return max((a[k].double() - b[k].double()).abs().max().item()
               for k in a if a[k].is_floating_point())


def metrics(work_dir, step=None, key='mIoU'):
    """The metric records of ``work_dir``'s runs (val during training: the
    record at ``step``; test: the last one)."""
    recs = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json')) +
                       glob.glob(osp.join(work_dir, '*', '*.json'))):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if key in rec and (step is None or rec.get('step') == step):
                    recs.append({k: rec[k] for k in ('aAcc', 'mIoU', 'mAcc')})
    assert recs, f'no {key} record (step {step}) under {work_dir}'
    return recs[-1]


def generate_data(root):
    """8 train + 2 val synthetic images of 64x96 (idempotent)."""
    if not osp.isfile(osp.join(root, 'done')):
        from segext.datasets.synthetic import generate
        generate(root, layout='coco', num_train=8, num_val=2, size=(64, 96),
                 seed=3)
        open(osp.join(root, 'done'), 'w').close()
    return root


def session_dir(tmp_path_factory, name):
    path = osp.join(str(tmp_path_factory.getbasetemp()), name)
    os.makedirs(path, exist_ok=True)
    return path


def start_reference_runs(tmp_path_factory, data_root, which):
    """Start the single-process runs (batch 2) that the distributed runs
    must match, concurrently; cached for the whole pytest session.

    ``which``: names among 'gn' (GroupNorm model, 16 iterations, val at 6,
    12 and 16) and 'bn' (the SyncBN config, which mmengine's
    non-distributed runner turns into plain BN; 6 iterations).
    Returns ({name: work_dir}, [Proc]); pass both to :func:`wait_references`.
    """
    specs = {
        'gn': (GN_CONFIG, 16),
        'bn': (SYNCBN_CONFIG, 6),
    }
    base = session_dir(tmp_path_factory, 'reference')
    out, procs = {}, []
    for name in which:
        config, iters = specs[name]
        work = osp.join(base, name)
        out[name] = work
        if osp.isfile(osp.join(work, f'iter_{iters}.pth')):
            continue
        cmd = train_cmd(config, work,
                        data_options(data_root, 2, iters, 6), '--overwrite')
        procs.append(Proc(cmd, osp.join(base, f'{name}.log')))
    return out, procs


def wait_references(started, timeout=600):
    out, procs = started
    for proc in procs:
        proc.wait(timeout)
    return out


def reference_runs(tmp_path_factory, data_root, which, timeout=600):
    """:func:`start_reference_runs` and wait for them."""
    return wait_references(
        start_reference_runs(tmp_path_factory, data_root, which), timeout)


def wait_for(predicate, timeout, interval=0.2, what='condition'):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f'timed out after {timeout}s waiting for {what}')


def checkpoint_iter(path):
    return state_dict(path)['meta']['iter']
