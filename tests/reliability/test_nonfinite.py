"""Divergence (issue 10, item 2): a NaN/inf loss stops the run with one
line and exit 2 (or skips the step, when configured); a checkpoint with
NaN/inf weights is never written, so the finite ones are never rotated out.
Before NonFiniteCheckHook, lr=1e8 trained on to exit 0 with only NaN
checkpoints left.
"""
import glob
import os.path as osp
import sys

import pytest
import torch
from torch import nn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tests', 'test_tools'))
import dist_helpers as H  # noqa: E402

TINY_SEG = osp.join(ROOT, 'tests', 'data', 'configs', 'tiny-fcn_synthetic.py')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return H.generate_data(H.session_dir(tmp_path_factory, 'nonfinite_data'))


def diverging_run(tmp_path, data_root, hook='', optim_type='OptimWrapper'):
    """tools/train.py on the tiny FCN with lr=1e8 (NaN from iteration 3),
    a checkpoint every iteration and max_keep_ckpts=1."""
    config = tmp_path / 'diverging.py'
    config.write_text(f"_base_ = ['{TINY_SEG}']\n"
                      f"custom_hooks = [dict(type='NonFiniteCheckHook'{hook})]"
                      "\n")
    opts = H.data_options(data_root, max_iters=8, extra=[
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=1',
        'optim_wrapper.optimizer.lr=1e8', f'optim_wrapper.type={optim_type}'])
    work = tmp_path / 'work'
    proc = H.run(H.train_cmd(config, work, opts), tmp_path / 'log', 300,
                 check=False)
    return proc, work


def error_line(proc):
    lines = [ln for ln in proc.text().splitlines()
             if ln.startswith('train: error:')]
    assert len(lines) == 1, proc.tail()
    assert 'Traceback' not in proc.text(), proc.tail()
    return lines[0]


def assert_checkpoints_finite(work):
    ckpts = glob.glob(osp.join(work, '*.pth'))
    assert ckpts, 'the finite checkpoints must be kept'
    for ckpt in ckpts:
        for name, value in H.state_dict(ckpt)['state_dict'].items():
            if value.is_floating_point():
                assert torch.isfinite(value).all(), (ckpt, name)


def test_nan_loss_stops_the_run_and_keeps_finite_checkpoints(
        tmp_path, data_root):
    proc, work = diverging_run(tmp_path, data_root)
    assert proc.popen.returncode == 2, proc.tail()
    line = error_line(proc)
    assert 'while training: iteration 3: non-finite loss (' \
           'decode.loss_ce=nan)' in line, line
    assert_checkpoints_finite(work)
    assert osp.isfile(work / 'iter_2.pth')


def test_skip_mode_skips_steps_then_stops_after_max_consecutive(
        tmp_path, data_root):
    proc, work = diverging_run(
        tmp_path, data_root,
        hook=", on_nonfinite='skip', max_consecutive_skips=3",
        optim_type='NonFiniteSkipOptimWrapper')
    assert proc.popen.returncode == 2, proc.tail()
    log = proc.text()
    for n in (1, 2):
        assert f'optimizer step skipped ({n} in a row, {n} in this run)' \
            in log, log[-3000:]
    assert 'in 3 consecutive iterations (max_consecutive_skips=3)' \
        in error_line(proc)
    assert_checkpoints_finite(work)


def test_skip_mode_needs_a_skipping_optim_wrapper():
    from types import SimpleNamespace

    from mmengine.optim import OptimWrapper

    from segext.engine import NonFiniteCheckHook
    from segext.utils.config import UserInputError
    plain = OptimWrapper(torch.optim.SGD(nn.Linear(2, 1).parameters(), 0.1))
    with pytest.raises(UserInputError, match="needs optim_wrapper.type="
                       "'NonFiniteSkipOptimWrapper' .* got 'OptimWrapper'"):
        NonFiniteCheckHook(on_nonfinite='skip').before_train(
            SimpleNamespace(optim_wrapper=plain))


def test_skip_optim_wrapper_leaves_weights_and_state_untouched():
    from segext.engine import NonFiniteSkipOptimWrapper
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    wrapper = NonFiniteSkipOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.tensor([[1.0, float('nan'), 0.0]])).sum()
    wrapper.update_params(loss)
    assert wrapper.skipped_steps == 1
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert not wrapper.optimizer.state  # no momentum buffer either
    assert all(p.grad is None or not p.grad.any()
               for p in model.parameters())
    wrapper.update_params(model(torch.ones(1, 3)).sum())
    assert wrapper.skipped_steps == 1
    assert not torch.equal(before[0], model.weight)


def test_checkpoint_with_nonfinite_weights_is_refused():
    from types import SimpleNamespace

    from segext.engine import NonFiniteCheckHook, NonFiniteTrainingError
    hook = NonFiniteCheckHook()
    runner = SimpleNamespace(iter=6)
    ok = {'state_dict': {'w': torch.ones(2), 'n': torch.tensor([3])}}
    hook.before_save_checkpoint(runner, ok)
    bad = {'state_dict': {'w': torch.tensor([1.0, float('inf')]),
                          'b': torch.tensor([float('nan')])}}
    with pytest.raises(NonFiniteTrainingError,
                       match=r'iteration 7: 2 of 2 weight tensors are '
                             r'NaN/inf \(w, b\); the checkpoint was not '
                             r'written'):
        hook.before_save_checkpoint(runner, bad)
    with pytest.raises(ValueError, match="'stop' or 'skip'"):
        NonFiniteCheckHook(on_nonfinite='ignore')
