"""segext.utils.checkpoint: the one loading helper, its exact and scoped
allow-list, the trusted-file opt-in and latest-checkpoint discovery."""
import logging
import os.path as osp
import pickle
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from segext.utils.checkpoint import (TRUSTED_ENV, CheckpointError,
                                     allow_stock_mmengine_checkpoints,
                                     find_latest_checkpoint,
                                     is_intact_checkpoint,
                                     load_checkpoint_file)

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from crafted_checkpoints import (crafted_checkpoint,  # noqa: E402
                                 released_formats, stock_mmengine_checkpoint)


@pytest.fixture
def no_trust(monkeypatch):
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    return monkeypatch


# ------------------------------------------------------------ refusing
def test_crafted_file_is_refused_in_one_line(tmp_path, no_trust):
    marker = tmp_path / 'marker'
    path = crafted_checkpoint(tmp_path / 'evil.pth', marker)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_file(path)
    msg = str(err.value)
    assert '\n' not in msg
    assert path in msg and 'GLOBAL io.open' in msg and TRUSTED_ENV in msg
    assert not marker.exists()


class _Reduce:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _dump(tmp_path, obj, name='x.pth'):
    path = str(tmp_path / name)
    torch.save(dict(meta=obj), path)
    return path


def test_getattr_is_admitted_only_for_history_buffer_statistics(tmp_path):
    """With the real ``getattr`` allowed, a pickle reaches a function's
    ``__globals__`` -- a live module dict it could then overwrite with
    SETITEM.  segext's stand-in refuses everything but the statistics."""
    allowed = torch._utils._rebuild_tensor_v2  # in torch's own allow-list
    escape = _dump(tmp_path, _Reduce(getattr, allowed, '__globals__'))
    with torch.serialization.safe_globals([getattr]):
        leaked = torch.load(escape)['meta']
    assert leaked is allowed.__globals__  # why the real one is unsafe
    with pytest.raises(CheckpointError, match='not a HistoryBuffer statis'):
        load_checkpoint_file(escape)
    dunder = _dump(tmp_path, _Reduce(getattr, HistoryBuffer, '__init__'))
    with pytest.raises(CheckpointError, match='not a HistoryBuffer statis'):
        load_checkpoint_file(dunder)
    fine = _dump(tmp_path, _Reduce(getattr, HistoryBuffer, 'mean'))
    assert load_checkpoint_file(fine)['meta'] is HistoryBuffer.mean


def test_numpy_object_arrays_are_refused(tmp_path, no_trust):
    marker = tmp_path / 'marker'
    from crafted_checkpoints import CreatesFile
    path = _dump(tmp_path, np.array([CreatesFile(marker)], dtype=object))
    with pytest.raises(CheckpointError):
        load_checkpoint_file(path)
    harmless = _dump(tmp_path, np.array([1, 'a'], dtype=object), 'obj.pth')
    with pytest.raises(CheckpointError, match="dtype"):
        load_checkpoint_file(harmless)
    assert not marker.exists()


def test_trusted_file_is_loaded_fully(tmp_path, no_trust):
    """The documented opt-in: the named file only, with its code."""
    marker = tmp_path / 'marker'
    path = crafted_checkpoint(tmp_path / 'mine.pth', marker)
    other = crafted_checkpoint(tmp_path / 'other.pth', tmp_path / 'm2')
    no_trust.setenv(TRUSTED_ENV, f'/nowhere.pth, {path}')
    load_checkpoint_file(path)
    assert marker.exists()
    with pytest.raises(CheckpointError):
        load_checkpoint_file(other)
    assert not (tmp_path / 'm2').exists()


def test_missing_and_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match='checkpoint not found: .*gone'):
        load_checkpoint_file(str(tmp_path / 'gone.pth'))
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='junk.pth: not a readable'):
        load_checkpoint_file(str(junk))


# ------------------------------------------------------------ loading
def _same(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_released_formats_load_without_opt_in(tmp_path, no_trust):
    for name, path in released_formats(tmp_path).items():
        ckpt = load_checkpoint_file(path)
        assert _same(ckpt, torch.load(path, weights_only=False)), name


def test_stock_mmengine_checkpoint_loads_inside_the_scope_only(tmp_path):
    path = stock_mmengine_checkpoint(tmp_path / 'iter_8.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # the trap (mmengine#1655) is real
    ckpt = load_checkpoint_file(path)
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer) and buf.mean() == 0.375
    assert ckpt['meta']['seed'] == np.int64(3)
    np.testing.assert_array_equal(ckpt['meta']['dataset_meta']['weights'],
                                  [0.5, 2.0])
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # nothing stays allow-listed
    with allow_stock_mmengine_checkpoints():
        assert torch.load(path)['meta']['iter'] == 8


# -------------------------------------------- latest-checkpoint discovery
@contextmanager
def logged():
    """The records mmengine's current logger emits inside the block."""
    from mmengine.logging import MMLogger
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _ckpt(path, step):
    torch.save(dict(meta=dict(iter=step)), str(path))
    return str(path)


@pytest.mark.parametrize('pointer', ['empty', 'missing', 'truncated'])
def test_find_latest_checkpoint_survives_a_bad_pointer(tmp_path, pointer):
    for step in (2, 4, 10):
        _ckpt(tmp_path / f'iter_{step}.pth', step)
    (tmp_path / 'best.pth').write_bytes(b'x')
    torn = tmp_path / 'iter_12.pth'
    torn.write_bytes(open(_ckpt(torn, 12), 'rb').read()[:100])
    named = dict(empty='', missing=str(tmp_path / 'iter_99.pth'),
                 truncated=str(torn))[pointer]
    (tmp_path / 'last_checkpoint').write_text(named)
    assert not is_intact_checkpoint(str(torn))
    with logged() as records:
        latest = find_latest_checkpoint(str(tmp_path))
    assert latest == str(tmp_path / 'iter_10.pth')
    warned = ' '.join(r.getMessage() for r in records)
    assert latest in warned and (named in warned if named else 'empty'
                                 in warned)


def test_find_latest_checkpoint_as_upstream_otherwise(tmp_path):
    assert find_latest_checkpoint(str(tmp_path)) is None
    path = _ckpt(tmp_path / 'iter_4.pth', 4)
    (tmp_path / 'last_checkpoint').write_text(path)
    assert find_latest_checkpoint(str(tmp_path)) == path
