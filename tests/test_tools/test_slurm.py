"""tools/slurm_train.sh and tools/slurm_test.sh on a REAL Slurm cluster.

tests/slurm/start_local_cluster.sh installs Debian's slurm + munge when
missing and starts a private single-node cluster (2 CPUs, no GPU GRES) as
root; the tests then

* train with ``GPUS=2 GPUS_PER_NODE=0`` (2 CPU tasks, gloo, no --gres) and
  match the single-process run with the same total batch;
* preempt a requeue-able batch job mid-run (``scontrol requeue``: Slurm
  sends SIGTERM, then SIGKILL, and queues the job again); the restarted job
  resumes from the last checkpoint by itself (``--resume`` without a path)
  and ends with the uninterrupted run's iteration count and weights;
* test the final checkpoint with 2 tasks.

Skipped (with the reason) where no cluster can be started -- not root, no
slurm and no apt-get; ``SEGEXT_REQUIRE_SLURM=1`` (CI) turns that into a
failure.  The cluster is stopped (jobs cancelled, daemons killed by PID) at
the end of the module.
"""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import dist_helpers as H  # noqa: E402

pytestmark = pytest.mark.slurm

SLURM_DIR = osp.join(H.ROOT, 'tests', 'slurm')
TIMEOUT = 300  # per job
START_TIMEOUT = 900  # cluster start, apt-get included
MAX_ITERS = 16  # preempted run (checkpoint every 2 iterations)


def _cannot_start():
    if not sys.platform.startswith('linux'):
        return f'a local Slurm cluster needs Linux (found {sys.platform})'
    if os.geteuid() != 0:
        return (f'a local Slurm cluster needs root (uid {os.geteuid()}): '
                f'slurmd runs job steps as their user')
    if not shutil.which('slurmd') and not shutil.which('apt-get'):
        return 'slurm is not installed and there is no apt-get to install it'
    return None


def _skip_or_fail(reason):
    if os.environ.get('SEGEXT_REQUIRE_SLURM') == '1':
        pytest.fail(f'SEGEXT_REQUIRE_SLURM=1 but {reason}')
    pytest.skip(reason)


class Cluster:

    def __init__(self, state_dir, partition):
        self.state_dir, self.partition = state_dir, partition
        self.env = {k: v for k, v in H.tool_env().items()
                    if not k.startswith('SLURM_')}  # an outer allocation's
        self.env['SLURM_CONF'] = osp.join(state_dir, 'slurm.conf')

    def run(self, *args, env=None, timeout=30):
        return subprocess.run(args, env=env or self.env, capture_output=True,
                              text=True, timeout=timeout, check=True).stdout

    def job_state(self, job):
        out = self.run('scontrol', 'show', 'job', str(job))
        return re.search(r'JobState=(\S+)', out).group(1)

    def node_states(self):
        out = self.run('sinfo', '-h', '-p', self.partition, '-o', '%t')
        return set(out.split())


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return H.generate_data(H.session_dir(tmp_path_factory, 'ddp_data'))


@pytest.fixture(scope='module')
def cluster_and_references(tmp_path_factory, data_root):
    """Start the cluster; the single-process references train meanwhile
    (and alongside the first Slurm job) -- :func:`references` waits."""
    reason = _cannot_start()
    if reason:
        _skip_or_fail(reason)
    started = H.start_reference_runs(tmp_path_factory, data_root, ('gn', ))
    t0 = time.time()
    proc = subprocess.run(['bash', osp.join(SLURM_DIR,
                                            'start_local_cluster.sh')],
                          capture_output=True, text=True,
                          timeout=START_TIMEOUT)
    if proc.returncode != 0:
        for p in started[1]:
            p.kill()
        _skip_or_fail('tests/slurm/start_local_cluster.sh failed:\n' +
                      proc.stderr[-3000:])
    state_dir = proc.stdout.strip().splitlines()[-1]
    print(f'\n[slurm] cluster up in {time.time() - t0:.1f} s '
          f'({proc.stderr.strip().splitlines()[-1]})')
    try:
        yield Cluster(state_dir, 'segext'), started
    finally:
        for p in started[1]:
            p.kill()
        subprocess.run(['bash', osp.join(SLURM_DIR, 'stop_local_cluster.sh'),
                        state_dir], timeout=120)


@pytest.fixture(scope='module')
def cluster(cluster_and_references):
    return cluster_and_references[0]


@pytest.fixture(scope='module')
def references(cluster_and_references):
    return H.wait_references(cluster_and_references[1])


def slurm_env(cluster, **extra):
    env = dict(cluster.env, GPUS='2', GPUS_PER_NODE='0', CPUS_PER_TASK='1',
               PORT=str(H.free_port()))
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope='module')
def slurm_run(cluster, data_root, tmp_path_factory):
    """``GPUS=2 GPUS_PER_NODE=0 tools/slurm_train.sh``: 16 iterations, 2 CPU
    tasks x batch 1, validation at 6, 12 and 16."""
    work = tmp_path_factory.mktemp('slurm_train')
    cmd = ['bash', osp.join(H.ROOT, 'tools', 'slurm_train.sh'),
           cluster.partition, 'segext-ddp', H.GN_CONFIG, str(work),
           *H.data_options(data_root, 1, MAX_ITERS, 6)]
    t0 = time.time()
    proc = H.run(cmd, str(work / 'run.log'), TIMEOUT, env=slurm_env(cluster))
    print(f'\n[slurm] slurm_train.sh, 2 tasks, {MAX_ITERS} iterations: '
          f'{time.time() - t0:.1f} s')
    return str(work), proc.text()


def test_slurm_train_two_cpu_tasks_match_one_process(slurm_run, references):
    work, log = slurm_run
    srun = [ln for ln in log.splitlines() if ln.startswith('+ srun ')]
    assert srun and '--ntasks=2' in srun[0], log[:3000]
    assert '--gres' not in srun[0]
    assert 'CPU mode' in log
    assert log.count("backend 'nccl' -> 'gloo'") == 2
    for step, atol in ((6, H.ATOL), (MAX_ITERS, H.ATOL_16)):
        diff = H.max_abs_diff(osp.join(work, f'iter_{step}.pth'),
                              osp.join(references['gn'], f'iter_{step}.pth'))
        print(f'[slurm_train.sh 2 tasks x batch 1 vs 1 proc x batch 2, '
              f'{step} SGD steps] max |w_slurm - w_single| = {diff:.3e} '
              f'(tolerance {atol:g})')
        assert diff < atol
        assert H.metrics(work, step=step) == H.metrics(references['gn'],
                                                       step=step)


JOB_SCRIPT = """#!/usr/bin/env bash
# requeue-able training job: --resume (no path) continues from
# WORK_DIR/last_checkpoint after a preemption, or starts fresh.
echo "=== job $SLURM_JOB_ID start $(date +%T)" \
     "restart ${{SLURM_RESTART_COUNT:-0}}"
bash {tools}/slurm_train.sh {partition} segext-preempt {config} {work_dir} \\
    --resume {opts}
rc=$?
echo "=== job $SLURM_JOB_ID end $(date +%T) exit $rc"
exit $rc
"""


@pytest.fixture(scope='module')
def preempted_run(cluster, data_root, tmp_path_factory):
    """A batch job preempted (requeued) after its 2nd checkpoint."""
    work = str(tmp_path_factory.mktemp('preempt'))
    opts = H.data_options(data_root, 1, MAX_ITERS, 1000)
    script = osp.join(work, 'job.sh')
    with open(script, 'w') as f:
        f.write(JOB_SCRIPT.format(
            tools=osp.join(H.ROOT, 'tools'), partition=cluster.partition,
            config=H.GN_CONFIG, work_dir=work, opts=' '.join(opts)))
    log = osp.join(work, 'slurm.log')
    t0 = time.time()
    # the job gets the submitting environment: SLURM_CONF, GPUS=2, ...
    job = cluster.run('sbatch', '--parsable', '-p', cluster.partition,
                      '--ntasks=2', '--cpus-per-task=1', '--requeue',
                      '--open-mode=append', '-o', log, script,
                      env=slurm_env(cluster)).strip().split(';')[0]

    def second_checkpoint():
        if cluster.job_state(job) not in ('PENDING', 'RUNNING'):
            raise AssertionError(f'job {job} ended early:\n' +
                                 open(log).read()[-4000:])
        return osp.isfile(osp.join(work, 'iter_4.pth'))

    H.wait_for(second_checkpoint, TIMEOUT, what='the 2nd checkpoint')
    cluster.run('scontrol', 'requeue', job)
    requeued_at = time.time()
    # Slurm holds a requeued job for ~2 min (BeginTime); do not wait for it,
    # but let the node finish killing the first run, and start no sooner
    # than 2 s after the requeue: slurmd revokes the job's credential with a
    # one-second resolution, and a relaunch within the same second is
    # refused ("Job credential revoked") and the job ends FAILED.
    H.wait_for(lambda: cluster.job_state(job) == 'PENDING', 60,
               what='the requeued job to be pending')
    H.wait_for(lambda: cluster.node_states() == {'idle'}, 60,
               what='the node to be idle after the requeue')
    cluster.run('scontrol', 'update', f'JobId={job}', 'StartTime=now+2')
    H.wait_for(lambda: cluster.job_state(job) in ('COMPLETED', 'FAILED',
                                                  'CANCELLED', 'TIMEOUT'),
               2 * TIMEOUT, interval=1, what=f'job {job} to finish')
    print(f'\n[slurm] preempted job {job}: {time.time() - t0:.1f} s '
          f'({time.time() - requeued_at:.1f} s after the requeue)')
    return job, work, open(log).read()


def test_preempted_job_resumes_and_finishes(cluster, preempted_run,
                                            slurm_run, references):
    job, work, log = preempted_run
    assert cluster.job_state(job) == 'COMPLETED', log[-4000:]
    starts = re.findall(r'=== job \d+ start \S+ restart (\d+)', log)
    assert starts == ['0', '1'], log[-4000:]
    first, second = log.split('restart 1', 1)
    # the first run was cut short: it did not finish ...
    done = [int(i) for i in re.findall(r'Iter\(train\) \[\s*(\d+)/', first)]
    assert max(done) < MAX_ITERS
    # ... and the second resumed by itself from a checkpoint of the first
    m = re.search(r'Auto resumed from the latest checkpoint (\S+)\.pth',
                  second)
    assert m, second[:4000]
    resumed = int(re.search(r'iter_(\d+)$', m.group(1)).group(1))
    assert 4 <= resumed <= max(done)
    assert f'Advance dataloader {resumed} steps' in second
    assert f'Iter(train) [{MAX_ITERS}/{MAX_ITERS}]' in second
    # nothing torn: every checkpoint loads and says what it is
    for i in range(2, MAX_ITERS + 1, 2):
        assert H.checkpoint_iter(osp.join(work, f'iter_{i}.pth')) == i
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip().endswith(f'iter_{MAX_ITERS}.pth')
    # and the weights are the uninterrupted runs' (same 2-task arithmetic:
    # bit for bit; single process: float noise)
    final = osp.join(work, f'iter_{MAX_ITERS}.pth')
    exact = H.max_abs_diff(final,
                           osp.join(slurm_run[0], f'iter_{MAX_ITERS}.pth'))
    diff = H.max_abs_diff(
        final, osp.join(references['gn'], f'iter_{MAX_ITERS}.pth'))
    excerpt = [ln for ln in log.splitlines() if re.search(
        r'=== job|Auto resumed|Advance dataloader|resumed epoch|'
        rf'Iter\(train\) \[\s*({max(done)}|{resumed + 1}|{MAX_ITERS})/', ln)]
    print('\n[slurm] preemption log excerpt:\n  ' + '\n  '.join(excerpt))
    print(f'[slurm] preempted at iter {max(done)}, resumed from iter '
          f'{resumed}; at iter {MAX_ITERS}: max |w - w_uninterrupted| = '
          f'{exact:.3e} (same 2 tasks), {diff:.3e} (single process; '
          f'tolerance {H.ATOL_16:g})')
    assert exact < 1e-6
    assert diff < H.ATOL_16


def test_slurm_test_two_cpu_tasks(cluster, preempted_run, references,
                                  data_root, tmp_path):
    _, work, _ = preempted_run
    cmd = ['bash', osp.join(H.ROOT, 'tools', 'slurm_test.sh'),
           cluster.partition, 'segext-test', H.GN_CONFIG,
           osp.join(work, f'iter_{MAX_ITERS}.pth'), '--work-dir',
           str(tmp_path), *H.data_options(data_root)]
    proc = H.run(cmd, str(tmp_path / 'test.log'), TIMEOUT,
                 env=slurm_env(cluster))
    assert '--gres' not in proc.text()
    assert H.metrics(str(tmp_path)) == H.metrics(references['gn'],
                                                 step=MAX_ITERS)
