"""SafeCheckpointHook: checkpoints without numpy/HistoryBuffer objects that
resume exactly, atomic writes (a kill never leaves a torn file behind
``last_checkpoint``), outdated checkpoints removed only after the new one is
on disk, and a free-space check that names the path and the size."""
import errno
import os
import os.path as osp
import subprocess
import sys
import textwrap
import types
from collections import deque

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from segext.engine.hooks import SafeCheckpointHook
from segext.engine.hooks import checkpoint_hook as hook_module
from segext.utils.plain_state import from_plain, to_plain

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from toy_runner import toy_runner  # noqa: E402


def test_plain_state_round_trip_is_exact():
    buf = HistoryBuffer([0.5, 0.25, 1e-9], [1, 2, 1], max_length=7)
    value = dict(buf=buf, seed=np.int64(3), f=np.float32(0.1),
                 arr=np.arange(6, dtype=np.uint8).reshape(2, 3),
                 nested=[(np.bool_(True), 'x')], text='keep', n=None)
    back = from_plain(to_plain(value))
    assert back['seed'] == 3 and type(back['seed']) is np.int64
    assert type(back['f']) is np.float32 and back['f'] == np.float32(0.1)
    assert back['arr'].dtype == np.uint8
    np.testing.assert_array_equal(back['arr'], value['arr'])
    assert type(back['nested'][0][0]) is np.bool_
    assert back['text'] == 'keep' and back['n'] is None
    assert isinstance(back['buf'], HistoryBuffer)
    assert back['buf'].max_length == 7
    for a, b in zip(back['buf'].data, buf.data):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_checkpoints_load_with_weights_only_and_resume_exactly(tmp_path):
    # what a save killed mid-write leaves: the hook's temp file
    os.makedirs(tmp_path / 'a')
    stale = tmp_path / 'a' / '.iter_6.pth.4242.0123abcd.tmp'
    stale.write_bytes(b'torn')
    first = toy_runner(tmp_path / 'a')
    first.train()
    assert not stale.exists()
    # max_keep_ckpts=1: only the newest checkpoint is left
    assert sorted(os.listdir(tmp_path / 'a'))[-2:] == [
        'iter_4.pth', 'last_checkpoint']
    assert not any(n.endswith('.tmp') for n in os.listdir(tmp_path / 'a'))
    ckpt = torch.load(str(tmp_path / 'a' / 'iter_4.pth'))  # no allow-list
    assert ckpt['meta']['iter'] == 4
    with open(tmp_path / 'a' / 'last_checkpoint') as f:
        assert f.read() == str(tmp_path / 'a' / 'iter_4.pth')

    resumed = toy_runner(tmp_path / 'b', max_iters=4, resume=True,
                         load_from=str(tmp_path / 'a' / 'iter_4.pth'))
    resumed.load_or_resume()
    hub, ref = resumed.message_hub, first.message_hub
    for key in ('train/loss', 'train/lr'):
        for a, b in zip(hub.get_scalar(key).data, ref.get_scalar(key).data):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    assert resumed.iter == 4
    assert hub.get_info('keep_ckpt_ids') == [4]


def _fake_runner(tmp_path, hub_name):
    """The runner side of a save: writes the file the hook asks for with
    mmengine's own (non-atomic) writer, or dies half-way."""
    from mmengine.runner.checkpoint import save_checkpoint
    saved = []

    def save(out_dir, filename, *args, meta=None, **kwargs):
        path = osp.join(out_dir, filename)
        if meta.get('fail'):
            with open(path, 'wb') as f:
                f.write(b'half a checkpoint')
            raise meta['fail']
        save_checkpoint(dict(meta=dict(meta), state_dict={}), path)
        saved.append(meta['iter'])

    return types.SimpleNamespace(
        work_dir=str(tmp_path), save_checkpoint=save,
        message_hub=MessageHub.get_instance(hub_name),
        model=torch.nn.Linear(2, 2), optim_wrapper=None), saved


def _hook(tmp_path, max_keep_ckpts=1):
    from mmengine.fileio import get_file_backend
    hook = SafeCheckpointHook(interval=2, by_epoch=False,
                              max_keep_ckpts=max_keep_ckpts)
    hook.out_dir = str(tmp_path)
    hook.file_backend = get_file_backend(str(tmp_path))
    hook.keep_ckpt_ids = deque([], max_keep_ckpts)  # as before_train does
    return hook


def _pointer(tmp_path):
    with open(tmp_path / 'last_checkpoint') as f:
        return f.read()


@pytest.mark.parametrize('failure', [
    KeyboardInterrupt('killed while saving (simulated)'),
    OSError(errno.ENOSPC, 'No space left on device')])
def test_failed_save_keeps_the_previous_checkpoint(tmp_path, failure):
    runner, saved = _fake_runner(tmp_path, f'hook-{type(failure)}')
    hook = _hook(tmp_path)
    hook._save_checkpoint_with_step(runner, 2, dict(iter=2))
    expected = (KeyboardInterrupt if isinstance(failure, KeyboardInterrupt)
                else hook_module.CheckpointWriteError)
    with pytest.raises(expected) as err:
        hook._save_checkpoint_with_step(runner, 4, dict(iter=4, fail=failure))
    if expected is hook_module.CheckpointWriteError:
        assert str(tmp_path / 'iter_4.pth') in str(err.value)
        assert 'No space left' in str(err.value)
    # upstream had deleted iter_2 (max_keep_ckpts=1) before writing iter_4
    assert sorted(os.listdir(tmp_path)) == ['iter_2.pth', 'last_checkpoint']
    assert _pointer(tmp_path) == str(tmp_path / 'iter_2.pth')
    assert saved == [2]


def test_outdated_checkpoints_are_removed_after_saving(tmp_path):
    runner, saved = _fake_runner(tmp_path, 'hook-rotate')
    hook = _hook(tmp_path, max_keep_ckpts=2)
    for step in (2, 4):
        hook._save_checkpoint_with_step(runner, step, dict(iter=step))
    hook._save_checkpoint_with_step(runner, 6, dict(iter=6))
    assert saved == [2, 4, 6]
    assert sorted(os.listdir(tmp_path)) == ['iter_4.pth', 'iter_6.pth',
                                            'last_checkpoint']


def test_free_space_is_checked_before_writing(tmp_path, monkeypatch):
    runner, saved = _fake_runner(tmp_path, 'hook-space')
    hook = _hook(tmp_path)
    hook._save_checkpoint_with_step(runner, 2, dict(iter=2))
    size = osp.getsize(tmp_path / 'iter_2.pth')
    monkeypatch.setattr(hook_module, 'free_bytes', lambda d: size // 2)
    with pytest.raises(hook_module.CheckpointWriteError) as err:
        hook._save_checkpoint_with_step(runner, 4, dict(iter=4))
    msg = str(err.value)
    assert '\n' not in msg
    assert str(tmp_path / 'iter_4.pth') in msg and 'needs about 1.0 MB' in msg
    assert 'max_keep_ckpts=1 deletes iter_2.pth only after' in msg
    assert sorted(os.listdir(tmp_path)) == ['iter_2.pth', 'last_checkpoint']
    assert saved == [2]


KILL_SCRIPT = r'''
import os, random, signal, sys, time, types
from collections import deque
import torch
from mmengine.fileio import get_file_backend
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import save_checkpoint
from mmengine.registry import HOOKS
import segext

out = sys.argv[1]
big = {f'w{i}': torch.randn(1024, 1024) for i in range(6)}  # 24 MB

def save(out_dir, filename, *args, meta=None, **kwargs):  # mmengine's writer
    save_checkpoint(dict(meta=dict(meta), state_dict=big),
                    os.path.join(out_dir, filename))

runner = types.SimpleNamespace(work_dir=out, save_checkpoint=save,
                               message_hub=MessageHub.get_instance('kill'),
                               model=torch.nn.Linear(1, 1), optim_wrapper=None)
hook = HOOKS.build(dict(type=sys.argv[3], interval=1, by_epoch=False,
                        max_keep_ckpts=1))
hook.out_dir, hook.file_backend = out, get_file_backend(out)
hook.keep_ckpt_ids = deque([], 1)
hook._save_checkpoint_with_step(runner, 1, dict(iter=1))
rng, torn, step = random.Random(0), 0, 1
for trial in range(int(sys.argv[2])):
    pid = os.fork()
    if pid == 0:  # the "trainer": saves forever
        while True:
            step += 1
            hook._save_checkpoint_with_step(runner, step, dict(iter=step))
    time.sleep(rng.uniform(0.05, 0.4))
    os.kill(pid, signal.SIGKILL)  # preemption, OOM killer, scancel -9
    os.waitpid(pid, 0)
    with open(os.path.join(out, 'last_checkpoint')) as f:
        named = f.read()
    try:
        it = torch.load(named)['meta']['iter']
        assert named.endswith(f'iter_{it}.pth')
    except Exception:
        torn += 1
print(f'TORN {torn}')
'''


def test_kill_during_save_never_leaves_a_torn_last_checkpoint(tmp_path):
    """SIGKILL a process that saves checkpoints in a loop, 5 times:
    ``last_checkpoint`` always names a complete file.  (The same script
    with mmengine's ``CheckpointHook``, 10 kills: 9 left it naming a file
    that was already deleted -- upstream rotates before writing.)"""
    script = tmp_path / 'kill.py'
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    out = tmp_path / 'work'
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, str(script), str(out), '5',
                           'SafeCheckpointHook'],
                          capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'TORN 0' in proc.stdout, proc.stdout
