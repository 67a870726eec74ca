"""One run per work dir (issue 10, item 3).

* two ``tools/train.py`` runs started together in one work dir: one trains,
  the other is refused with one line naming the work dir and the holder
  (before: both exited 0 and their checkpoints and logs were mixed);
* a killed run leaves no stale lock;
* ``--overwrite`` moves the earlier run's checkpoints aside, so a later
  ``--resume`` can never pick them up (before: ``--overwrite`` killed before
  its first checkpoint, then ``--resume``, silently resumed the earlier run
  and trained 0 iterations).
"""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tests', 'test_tools'))
import dist_helpers as H  # noqa: E402

TINY_SEG = osp.join(ROOT, 'tests', 'data', 'configs', 'tiny-fcn_synthetic.py')
TIMEOUT = 300


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return H.generate_data(H.session_dir(tmp_path_factory, 'lock_data'))


def train(work, opts, *extra, log):
    return H.Proc(H.train_cmd(TINY_SEG, work, opts, *extra), log)


def error_lines(proc):
    return [ln for ln in proc.text().splitlines()
            if ln.startswith('train: error:')]


def hold_lock(work_dir):
    """A process holding the work dir's lock until killed."""
    code = ('import sys, time; from segext.utils.workdir import WorkDirLock; '
            'WorkDirLock(sys.argv[1]).acquire(); print("held", flush=True); '
            'time.sleep(600)')
    proc = subprocess.Popen([sys.executable, '-c', code, str(work_dir)],
                            cwd=ROOT, env=H.tool_env(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'held'
    return proc


def test_lock_names_the_holder_and_dies_with_it(tmp_path):
    from segext.utils.config import UserInputError
    from segext.utils.workdir import WorkDirLock
    holder = hold_lock(tmp_path / 'work')
    try:
        with pytest.raises(UserInputError) as err:
            WorkDirLock(str(tmp_path / 'work')).acquire()
        msg = str(err.value)
        assert f'work dir {tmp_path}/work is in use by another run ' \
               f'(pid {holder.pid} on ' in msg, msg
        assert 'started 20' in msg and '-c' in msg, msg
    finally:
        holder.kill()  # like kill -9: the kernel drops the flock
        holder.wait()
    with WorkDirLock(str(tmp_path / 'work')):
        pass


def test_unusable_work_dir_is_one_clear_error(tmp_path):
    from segext.utils.config import UserInputError
    from segext.utils.workdir import WorkDirLock
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(UserInputError, match=f'work dir {blocker} is a file; '
                       'expected a directory'):
        WorkDirLock(str(blocker)).acquire()
    with pytest.raises(UserInputError, match=f'cannot use work dir '
                       f'{blocker}/sub: Not a directory'):
        WorkDirLock(str(blocker / 'sub')).acquire()


def test_two_runs_started_together_one_is_refused(tmp_path, data_root):
    work = tmp_path / 'work'
    opts = H.data_options(data_root, max_iters=2, val_interval=2)
    procs = [train(work, opts, log=tmp_path / f'{i}.log') for i in (1, 2)]
    codes = sorted(p.wait(TIMEOUT, check=False) for p in procs)
    assert codes == [0, 2], [p.tail() for p in procs]
    refused = [p for p in procs if p.popen.returncode == 2][0]
    (line,) = error_lines(refused)
    assert f'work dir {work} is in use by another run (pid ' in line, line
    assert 'Traceback' not in refused.text()
    # only the run that trained wrote logs (one timestamped log dir)
    assert len(glob.glob(osp.join(work, '2*', 'vis_data'))) == 1


def test_overwrite_moves_the_earlier_run_aside(tmp_path, data_root):
    work = tmp_path / 'work'
    first = H.data_options(data_root, max_iters=2, val_interval=100)
    train(work, first, log=tmp_path / 'first.log').wait(TIMEOUT)
    assert H.checkpoint_iter(work / 'iter_2.pth') == 2

    # --overwrite with another lr, killed before its first checkpoint
    second = H.data_options(data_root, max_iters=400, val_interval=1000,
                            extra=['optim_wrapper.optimizer.lr=0.02',
                                   'default_hooks.checkpoint.interval=400'])
    killed = train(work, second, '--overwrite', log=tmp_path / 'second.log')
    H.wait_for(lambda: 'Iter(train) [  1/400]' in killed.text(), TIMEOUT,
               what='the --overwrite run to train')
    killed.kill()
    moved = "--overwrite: moved the earlier run's iter_2.pth, " \
            "last_checkpoint to "
    assert moved in killed.text(), killed.tail()
    (aside,) = glob.glob(osp.join(work, 'overwritten_*'))
    assert sorted(os.listdir(aside)) == ['iter_2.pth', 'last_checkpoint']
    assert H.checkpoint_iter(osp.join(aside, 'iter_2.pth')) == 2
    assert not glob.glob(osp.join(work, '*.pth'))

    # --resume must not continue the earlier run: a fresh start
    resumed = train(work, first + ['optim_wrapper.optimizer.lr=0.02'],
                    '--resume', log=tmp_path / 'resumed.log')
    resumed.wait(TIMEOUT)
    log = resumed.text()
    assert 'resumed epoch' not in log, log[-3000:]
    assert 'Iter(train) [1/2]' in log and 'Iter(train) [2/2]' in log
    assert H.checkpoint_iter(work / 'iter_2.pth') == 2


def test_resume_and_overwrite_together_are_refused(tmp_path, data_root):
    proc = train(tmp_path / 'w', H.data_options(data_root), '--resume',
                 '--overwrite', log=tmp_path / 'log')
    assert proc.wait(TIMEOUT, check=False) == 2
    (line,) = error_lines(proc)
    assert 'pass only one of them' in line, line


def test_launcher_rank(monkeypatch):
    from segext.utils.workdir import launcher_rank
    for var in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK'):
        monkeypatch.setenv(var, '3')
    assert launcher_rank('none') == 0  # a single process is rank 0
    assert [launcher_rank(x) for x in ('pytorch', 'slurm', 'mpi')] == [3] * 3
    monkeypatch.delenv('RANK')
    assert launcher_rank('pytorch') == 0
