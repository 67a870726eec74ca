"""One training run per work dir.

:class:`WorkDirLock` is an ``fcntl.flock`` on ``WORK_DIR/.segext-train.lock``
held for the life of the run by the launcher's rank-0 process: the kernel
drops it when that process ends, however it ends (``kill -9`` included),
so a crashed run never leaves the work dir stuck.  The file records the
holder (pid, host, start time, command) for the refusal message.

:func:`move_earlier_run_aside` is what ``--overwrite`` does with the
earlier run's checkpoints: they move into ``WORK_DIR/overwritten_<time>/``,
so they are never lost and a later ``--resume`` cannot pick them up.
"""
from __future__ import annotations

import fcntl
import glob
import json
import os
import os.path as osp
import socket
import sys
import time

from .config import UserInputError

__all__ = ['LOCK_NAME', 'launcher_rank', 'WorkDirLock',
           'move_earlier_run_aside']

LOCK_NAME = '.segext-train.lock'

#: launcher -> the environment variable holding the global rank
_RANK_VARS = dict(pytorch='RANK', slurm='SLURM_PROCID',
                  mpi='OMPI_COMM_WORLD_RANK')


def launcher_rank(launcher: str) -> int:
    """This process's global rank as the launcher set it (before the
    process group exists); 0 without a launcher."""
    var = _RANK_VARS.get(launcher)
    return int(os.environ.get(var, 0)) if var else 0


class WorkDirLock:
    """An exclusive lock on a work dir; :meth:`acquire` raises a
    :class:`UserInputError` naming the work dir and the holder when another
    live process holds it."""

    def __init__(self, work_dir: str):
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK_NAME)
        self._fd = None

    def _holder(self, fd) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or '{}')
        except (OSError, ValueError):
            info = {}
        if not info:
            return 'a run that is just starting'
        return (f'pid {info.get("pid")} on {info.get("host")}, started '
                f'{info.get("start")}: {info.get("cmd")}')

    def acquire(self) -> 'WorkDirLock':
        if osp.exists(self.work_dir) and not osp.isdir(self.work_dir):
            raise UserInputError(f'work dir {self.work_dir} is a file; '
                                 f'expected a directory (or a new path)')
        try:
            os.makedirs(self.work_dir, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise UserInputError(
                f'cannot use work dir {self.work_dir}: {err.strerror} '
                f'({err.filename})') from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise UserInputError(
                f'work dir {self.work_dir} is in use by another run '
                f'({holder}); wait for it to end, stop it, or pass another '
                f'--work-dir') from None
        cmd = ' '.join(sys.argv)
        info = dict(pid=os.getpid(), host=socket.gethostname(),
                    start=time.strftime('%Y-%m-%d %H:%M:%S'),
                    cmd=cmd if len(cmd) <= 120 else cmd[:117] + '...')
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _earlier_run_files(work_dir: str) -> list:
    files = sorted(glob.glob(osp.join(work_dir, '*.pth')))
    last = osp.join(work_dir, 'last_checkpoint')
    return files + ([last] if osp.isfile(last) else [])


def move_earlier_run_aside(work_dir: str):
    """Move the checkpoints (``*.pth``) and ``last_checkpoint`` of an
    earlier run into a new ``work_dir/overwritten_<YYYYmmdd_HHMMSS>/``.

    Returns ``(folder, [file names])``, or ``None`` when there is nothing
    to move.  Call it with the :class:`WorkDirLock` held."""
    files = _earlier_run_files(work_dir)
    if not files:
        return None
    stamp = time.strftime('%Y%m%d_%H%M%S')
    dest, n = osp.join(work_dir, f'overwritten_{stamp}'), 1
    while osp.exists(dest):
        n += 1
        dest = osp.join(work_dir, f'overwritten_{stamp}-{n}')
    os.makedirs(dest)
    for path in files:
        os.replace(path, osp.join(dest, osp.basename(path)))
    return dest, [osp.basename(p) for p in files]
