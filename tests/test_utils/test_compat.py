"""The pinned-stack shims in segext.utils.compat (checkpoint part)."""
import pickle

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import (CheckpointLoader, _load_checkpoint,
                                        save_checkpoint)


def _runner_like_checkpoint(path):
    """What mmengine's CheckpointHook writes: weights + message hub + numpy."""
    import numpy as np
    hub = MessageHub.get_instance('compat-test')
    hub.update_scalar('train/loss', 0.5)
    ckpt = dict(
        meta=dict(epoch=0, iter=8, seed=np.int64(3),
                  dataset_meta=dict(classes=('a', 'b'))),
        state_dict=dict(w=torch.ones(2)),
        message_hub=hub.state_dict())
    save_checkpoint(ckpt, str(path))


def test_stock_torch_load_rejects_runner_checkpoints(tmp_path):
    """The trap is real: without the shim, torch 2.6+ refuses the file."""
    path = tmp_path / 'iter_8.pth'
    _runner_like_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(str(path), map_location='cpu')


def test_mmengine_loader_reads_runner_checkpoints(tmp_path):
    path = tmp_path / 'iter_8.pth'
    _runner_like_checkpoint(path)
    ckpt = _load_checkpoint(str(path), map_location='cpu')
    assert ckpt['meta']['iter'] == 8
    assert 'log_scalars' in ckpt['message_hub']
    assert torch.equal(ckpt['state_dict']['w'], torch.ones(2))


def test_local_scheme_is_ours():
    from segext.utils.compat import load_local_checkpoint
    assert CheckpointLoader._schemes[''] is load_local_checkpoint


def test_clear_errors_for_bad_checkpoint_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='gone.pth'):
        _load_checkpoint(str(tmp_path / 'gone.pth'))
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a checkpoint')
    with pytest.raises(RuntimeError, match='junk.pth'):
        _load_checkpoint(str(junk))


def test_apply_is_idempotent():
    from segext.utils import compat
    compat.apply()
    compat.apply()
    assert CheckpointLoader._schemes[''] is compat.load_local_checkpoint
