"""SegextRunner's loading: stock mmengine checkpoints resume under
``weights_only=True``, crafted files are refused at every load it performs
(``load_from``, resume, ``init_cfg=Pretrained``), and auto-resume skips a
``last_checkpoint`` that names a truncated file."""
import os.path as osp
import pickle
import sys

import numpy as np
import pytest
import torch

from segext.utils.checkpoint import TRUSTED_ENV, CheckpointError

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, osp.join(osp.dirname(HERE), 'test_utils'))
from crafted_checkpoints import crafted_checkpoint  # noqa: E402
from toy_runner import toy_runner  # noqa: E402

STOCK_HOOK = dict(type='CheckpointHook', interval=2, by_epoch=False)


@pytest.fixture(autouse=True)
def no_trust(monkeypatch):
    monkeypatch.delenv(TRUSTED_ENV, raising=False)


def _same_history(hub, ref, key='train/loss'):
    for a, b in zip(hub.get_scalar(key).data, ref.get_scalar(key).data):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_stock_mmengine_checkpoint_resumes(tmp_path):
    """mmengine#1655: upstream's Runner cannot resume its own checkpoint on
    torch >= 2.6; SegextRunner can, and restores the message hub."""
    stock = toy_runner(tmp_path / 'stock', runner_type='Runner',
                       checkpoint=STOCK_HOOK)
    stock.train()
    ckpt = str(tmp_path / 'stock' / 'iter_4.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt)
    again = toy_runner(tmp_path / 'stock2', runner_type='Runner',
                       checkpoint=STOCK_HOOK, resume=True, load_from=ckpt)
    with pytest.raises(pickle.UnpicklingError):
        again.load_or_resume()  # the upstream bug, without segext

    ours = toy_runner(tmp_path / 'ours', resume=True, load_from=ckpt,
                      max_iters=6)
    ours.load_or_resume()
    assert ours.iter == 4
    _same_history(ours.message_hub, stock.message_hub)
    ours.train()
    assert ours.iter == 6


@pytest.mark.parametrize('how', ['load_from', 'resume', 'auto_resume'])
def test_crafted_checkpoint_is_refused(tmp_path, how):
    work = tmp_path / 'work'
    marker = tmp_path / 'marker'
    evil = crafted_checkpoint(tmp_path / 'iter_2.pth', marker)
    kwargs = dict(load_from=evil, resume=how == 'resume')
    if how == 'auto_resume':
        work.mkdir()
        (work / 'last_checkpoint').write_text(evil)
        kwargs = dict(resume=True)
    runner = toy_runner(work, **kwargs)
    with pytest.raises(CheckpointError) as err:
        runner.load_or_resume()
    assert evil in str(err.value) and '\n' not in str(err.value)
    assert not marker.exists()


def test_crafted_pretrained_is_refused_naming_the_file(tmp_path):
    marker = tmp_path / 'marker'
    evil = crafted_checkpoint(tmp_path / 'backbone.pth', marker)
    runner = toy_runner(tmp_path / 'work', model=dict(
        type='ToyModel', init_cfg=dict(type='Pretrained', checkpoint=evil)))
    with pytest.raises(CheckpointError, match='backbone.pth was refused'):
        runner._init_model_weights()
    assert not marker.exists()


def test_auto_resume_skips_a_truncated_last_checkpoint(tmp_path):
    work = tmp_path / 'work'
    hook = dict(type='SafeCheckpointHook', interval=2, by_epoch=False)
    toy_runner(work, checkpoint=hook).train()  # iter_2, iter_4
    torn = work / 'iter_6.pth'
    torn.write_bytes((work / 'iter_4.pth').read_bytes()[:1000])
    (work / 'last_checkpoint').write_text(str(torn))
    runner = toy_runner(work, checkpoint=hook, resume=True, max_iters=6)
    runner.load_or_resume()
    assert runner.iter == 4
