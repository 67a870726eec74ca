"""Durable local file writes: a reader sees the old file or the new one.

A write killed half-way (Slurm preemption, ``scancel``, the OOM killer, a
full disk) must never leave a torn file where a complete one was.  Each
helper writes a temp file in the target's directory, ``fsync``s it and
``os.replace``s it over the target (atomic on POSIX), then ``fsync``s the
directory so the rename survives a node crash.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import uuid

__all__ = ['temp_name', 'replace_durably', 'atomic_write',
           'remove_stale_temp_files']

_TEMP_SUFFIX = '.tmp'


def temp_name(filename: str) -> str:
    """A hidden temp-file name next to ``filename`` (same directory, so
    ``os.replace`` is a rename): ``.NAME.PID.RANDOM.tmp``."""
    return (f'.{osp.basename(filename)}.{os.getpid()}.'
            f'{uuid.uuid4().hex[:8]}{_TEMP_SUFFIX}')


def _fsync_path(path: str, flags=os.O_RDONLY):
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: str, target: str):
    """fsync ``tmp``, rename it to ``target``, fsync the directory."""
    _fsync_path(tmp)
    os.replace(tmp, target)
    try:
        _fsync_path(osp.dirname(osp.abspath(target)))
    except OSError:  # some file systems cannot fsync a directory
        pass


def atomic_write(filepath: str, data, mode: str = 'wb', encoding=None):
    """Write ``data`` to ``filepath`` atomically (temp file + rename); on
    any failure the old file is kept and the temp file removed."""
    filepath = os.fspath(filepath)
    tmp = osp.join(osp.dirname(filepath) or '.', temp_name(filepath))
    try:
        with open(tmp, mode.replace('w', 'x'), encoding=encoding) as f:
            f.write(data)
        replace_durably(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def remove_stale_temp_files(directory: str, pattern: str = '*') -> list:
    """Delete the temp files (``.PATTERN.*.tmp``) a killed writer left in
    ``directory``; returns their paths.  Call only from the one process
    that writes there, when it is not writing."""
    removed = []
    for tmp in glob.glob(osp.join(directory, f'.{pattern}.*{_TEMP_SUFFIX}')):
        try:
            os.remove(tmp)
            removed.append(tmp)
        except OSError:
            pass
    return removed
