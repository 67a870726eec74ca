"""segext.utils.fileio: a failed write keeps the old file and leaves no
temp file; stale temp files are found and removed."""
import os

import pytest

from segext.utils import fileio


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / 'last_checkpoint'
    fileio.atomic_write(str(target), 'old complete pointer', 'w')

    def fail(fd):
        raise OSError('disk full (simulated)')

    monkeypatch.setattr(os, 'fsync', fail)
    with pytest.raises(OSError, match='simulated'):
        fileio.atomic_write(str(target), 'new pointer, half written', 'w')
    assert target.read_text() == 'old complete pointer'
    assert os.listdir(tmp_path) == ['last_checkpoint']  # no temp file left
    monkeypatch.undo()
    fileio.atomic_write(str(target), b'bytes', 'wb')
    assert target.read_bytes() == b'bytes'


def test_stale_temp_files_are_removed(tmp_path):
    stale = tmp_path / fileio.temp_name('iter_8.pth')
    stale.write_bytes(b'torn')
    other = tmp_path / fileio.temp_name('notes.txt')
    other.write_text('x')
    (tmp_path / 'iter_4.pth').write_bytes(b'complete')
    assert fileio.remove_stale_temp_files(str(tmp_path), '*.pth') == [
        str(stale)]
    assert sorted(os.listdir(tmp_path)) == sorted(['iter_4.pth', other.name])
