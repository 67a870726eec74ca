"""Broken samples: one line naming the file and exit 2, or, with
``CheckSegMap(on_invalid='skip')``, skipped with a counted warning.

Each case breaks one file of a generated 6-image dataset and runs the real
tools (2 iterations of the tiny mmseg model, or the Panoptic FPN config,
whose json errors stop the run before its first iteration): one in a
subprocess as a user starts it, the others through ``main(argv)``."""
import json
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import bad_input_helpers as H  # noqa: E402
from bad_input_helpers import data_root, fcn_checkpoint  # noqa: E402,F401
from segext.utils.config import UserInputError  # noqa: E402


def seg_args(tmp_path, data_root, *extra):
    return [H.TINY_SEG, '--work-dir', str(tmp_path / 'work'),
            '--cfg-options'] + H.seg_options(data_root) + list(extra)


def train_seg(tmp_path, data_root, *extra):
    return H.run_tool(['tools/train.py'] +
                      seg_args(tmp_path, data_root, *extra))


def write_label(path, change):
    label = np.array(Image.open(path))
    Image.fromarray(change(label)).save(path)


def paint_200(label):
    label[10:20, 10:30] = 200  # neither a class (0..5) nor ignore (255)
    return label


def test_label_value_outside_classes_stops_training(tmp_path, data_root,
                                                    capsys):
    """Today's main: ``Target 200 is out of bounds``, a traceback."""
    root = H.broken_copy(data_root, tmp_path)
    bad = H.first_file(f'{root}/semantic/train2017')
    write_label(bad, paint_200)
    proc = H.run_main('train', seg_args(tmp_path, root), capsys)
    H.assert_one_line_error(proc, bad,
                            'label values 200 (200 pixels)',
                            'nor ignore_index 255')


def test_label_value_outside_classes_stops_evaluation(
        tmp_path, data_root, fcn_checkpoint, capsys):
    """Today's main scores it: mIoU changes without a word."""
    root = H.broken_copy(data_root, tmp_path)
    bad = H.first_file(f'{root}/semantic/val2017')
    write_label(bad, paint_200)
    args = seg_args(tmp_path, root)
    proc = H.run_main('test', args[:1] + [fcn_checkpoint] + args[1:], capsys)
    H.assert_one_line_error(proc, bad, 'label values 200')


def test_annotation_of_another_size(tmp_path, data_root, capsys):
    root = H.broken_copy(data_root, tmp_path)
    bad = H.first_file(f'{root}/semantic/train2017')
    write_label(bad, lambda label: label[:48, :80].copy())
    proc = H.run_main('train', seg_args(tmp_path, root), capsys)
    H.assert_one_line_error(proc, bad,
                            'label map is 48x80', '64x96',
                            'expected the same size')


def test_skip_switch_counts_skipped_samples(tmp_path, data_root):
    """As a user runs it: a subprocess, trains on with a warning."""
    root = H.broken_copy(data_root, tmp_path)
    bad = H.first_file(f'{root}/semantic/train2017')
    write_label(bad, paint_200)
    proc = train_seg(tmp_path, root,
                     'train_dataloader.dataset.pipeline.2.on_invalid=skip')
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert f'CheckSegMap: skipped {bad}: label values 200' in log, log[-4000:]
    assert '(1 sample(s) skipped so far)' in log, log[-4000:]
    assert osp.isfile(tmp_path / 'work' / 'iter_2.pth')


@pytest.mark.parametrize('which', ['image', 'label'])
def test_truncated_file(tmp_path, data_root, which, capsys):
    root = H.broken_copy(data_root, tmp_path)
    folder = 'train2017' if which == 'image' else 'semantic/train2017'
    bad = H.first_file(f'{root}/{folder}')
    with open(bad, 'rb') as f:
        data = f.read()
    with open(bad, 'wb') as f:
        f.write(data[:len(data) // 2])
    proc = H.run_main('train', seg_args(tmp_path, root), capsys)
    H.assert_one_line_error(proc, bad, 'cannot read', 'truncated or corrupt')


def train_panoptic(tmp_path, root, capsys):
    return H.run_main('train', [H.PANOPTIC_FPN, '--work-dir',
                                str(tmp_path / 'work'), '--cfg-options'] +
                      H.panoptic_options(root), capsys)


def test_category_not_in_categories(tmp_path, data_root, capsys):
    root = H.broken_copy(data_root, tmp_path)
    ann = f'{root}/annotations/panoptic_train2017.json'
    with open(ann) as f:
        coco = json.load(f)
    coco['annotations'][0]['segments_info'][0]['category_id'] = 99
    with open(ann, 'w') as f:
        json.dump(coco, f)
    H.assert_one_line_error(train_panoptic(tmp_path, root, capsys), ann,
                            'category id 99 is not the id of one of the '
                            'classes (ids [1, 2, 3, 4, 5, 6]')


def test_invalid_annotation_json(tmp_path, data_root, capsys):
    root = H.broken_copy(data_root, tmp_path)
    ann = f'{root}/annotations/panoptic_train2017.json'
    with open(ann) as f:
        text = f.read()
    with open(ann, 'w') as f:
        f.write(text[:len(text) // 2])
    H.assert_one_line_error(train_panoptic(tmp_path, root, capsys), ann,
                            'not valid JSON')


class _BrokenSample(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, index):
        raise UserInputError('/data/x.png: label values 200 (3 pixels)')


def test_error_in_a_dataloader_worker_stays_one_line(capsys):
    """torch re-raises a worker's error with the worker's traceback in the
    message; the tools print the message alone."""
    from segext.utils.cli import user_errors_to_exit
    with pytest.raises(SystemExit) as done:
        with user_errors_to_exit('train', 'while training'):
            next(iter(torch.utils.data.DataLoader(_BrokenSample(),
                                                  num_workers=1)))
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('train: error: while training: /data/x.png: label '
                          'values 200 (3 pixels)\n'), err
    assert 'Traceback' not in err.replace('full traceback', ''), err
