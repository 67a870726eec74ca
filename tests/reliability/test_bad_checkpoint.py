"""``tools/test.py`` refuses a checkpoint that does not fit the config's
model (mmengine loads non-strictly and reports a wrong score, exit 0)."""
import os.path as osp
import sys

import pytest
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import bad_input_helpers as H  # noqa: E402
from bad_input_helpers import data_root, fcn_checkpoint  # noqa: E402,F401

DRN = osp.join(H.ROOT, 'configs', 'drn', 'drn-d-22_synthetic.py')


def tool_args(config, checkpoint, tmp_path, data_root, *extra):
    return [config, checkpoint, '--work-dir', str(tmp_path / 'work')] + \
        list(extra) + ['--cfg-options'] + H.seg_options(data_root)


def test_checkpoint_of_another_model(tmp_path, data_root, fcn_checkpoint,
                                     capsys):
    """DRN config + FCN checkpoint: main scored it (mIoU 7.51, exit 0)."""
    proc = H.run_main('test', tool_args(DRN, fcn_checkpoint, tmp_path,
                                        data_root), capsys)
    line = H.assert_one_line_error(
        proc, f'checkpoint {fcn_checkpoint} does not fit the model',
        'missing from the checkpoint', 'not in the model',
        'of another shape', '--allow-partial-load')
    assert '... ' in line and 'more' in line  # a few names, not all


def test_checkpoint_with_other_num_classes(tmp_path, data_root,
                                           fcn_checkpoint,
                                capsys):
    args = tool_args(H.TINY_SEG, fcn_checkpoint, tmp_path, data_root,
                     ) + ['model.decode_head.num_classes=7']
    proc = H.run_main('test', args, capsys)
    H.assert_one_line_error(
        proc, '2 of another shape',
        'decode_head.conv_seg.bias: (6,) in the checkpoint, (7,) in the model')


def test_partial_load_when_asked(tmp_path, data_root, fcn_checkpoint,
                                capsys):
    proc = H.run_main('test', tool_args(DRN, fcn_checkpoint, tmp_path,
                                        data_root, '--allow-partial-load'),
                      capsys)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'test: warning: --allow-partial-load: 84 missing' in proc.stderr


def test_compare_state_dicts():
    from segext.utils.config import UserInputError
    from segext.utils.state_dict_check import (check_state_dict,
                                               compare_state_dicts)
    model = {'a.weight': torch.zeros(2, 3), 'b.bias': torch.zeros(2),
             'c': torch.zeros(1)}
    ckpt = {'module.a.weight': torch.zeros(2, 3), 'b.bias': torch.zeros(3),
            'd': torch.zeros(1)}
    mismatch = compare_state_dicts(ckpt, model)
    assert mismatch.missing == ['c']
    assert mismatch.unexpected == ['d']
    assert mismatch.mis_shaped == [('b.bias', (3, ), (2, ))]
    assert not compare_state_dicts(model, model)
    with pytest.raises(UserInputError, match='1 missing from the checkpoint'):
        check_state_dict(ckpt, model, 'x.pth')
    assert check_state_dict(ckpt, model, 'x.pth', allow_partial=True)
