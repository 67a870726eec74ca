"""Config mistakes that upstream reports deep in training (or never):
``tools/train.py`` stops before the Runner with one line naming the key,
the value and what was expected (exit 2)."""
import os
import os.path as osp
import sys

import pytest

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import bad_input_helpers as H  # noqa: E402
from bad_input_helpers import data_root  # noqa: E402,F401


def train(capsys, config, work_dir, data_root, *options, panoptic=False):
    base = (H.panoptic_options if panoptic else H.seg_options)(data_root)
    return H.run_main('train', [config, '--work-dir', str(work_dir),
                                '--cfg-options'] + base + list(options),
                      capsys)


@pytest.mark.parametrize('option, expected', [
    ('optim_wrapper.optimizer.lrr=0.01',
     "optim_wrapper.optimizer.lrr: SGD has no argument 'lrr' (did you mean "
     "'lr'?)"),
    ('train_cfg.max_iter=2',
     "train_cfg.max_iter: IterBasedTrainLoop has no argument 'max_iter' (did "
     "you mean 'max_iters'?)"),
    ('optim_wrapper.optimizer.lr=-0.01',
     'optim_wrapper.optimizer.lr=-0.01: expected a number > 0'),
    ('train_dataloader.batch_size=0',
     'train_dataloader.batch_size=0: expected an integer >= 1'),
    ('model.decode_head.num_classes=7',
     'model.decode_head.num_classes=7: expected 6 for the 6 classes of '
     'train_dataloader.dataset (disk, box, triangle, sky, grass, sand)'),
    ('train_dataloader.dataset.pipeline.2.num_classes=5',
     'train_dataloader.dataset.pipeline.2.num_classes=5: expected 6'),
    ('trian_cfg.max_iters=2',
     "--cfg-options trian_cfg.max_iters=2: "
     f"{H.TINY_SEG} has no top-level key 'trian_cfg' (did you mean "
     "'train_cfg'?)"),
])
def test_bad_option(tmp_path, data_root, capsys, option, expected):
    proc = train(capsys, H.TINY_SEG, tmp_path / 'work', data_root, option)
    H.assert_one_line_error(proc, expected)


@pytest.mark.parametrize('option, expected', [
    ('model.panoptic_fusion_head.num_things_classes=4',
     'model.panoptic_fusion_head.num_things_classes=4: expected 3'),
    ('model.roi_head.bbox_head.num_classes=6',
     'model.roi_head.bbox_head.num_classes=6: expected 3'),
    ('model.semantic_head.num_stuff_classes=4',
     'model.semantic_head.num_stuff_classes=4: expected 3'),
])
def test_panoptic_class_counts(tmp_path, data_root, capsys, option,
                               expected):
    """Main: ``KeyError: np.int32(7)`` / ``Target 5 is out of bounds``."""
    proc = train(capsys, H.PANOPTIC_FPN, tmp_path / 'work', data_root,
                 option, panoptic=True)
    H.assert_one_line_error(proc, expected)


def test_typo_in_config_file(tmp_path, data_root, capsys):
    config = tmp_path / 'typo.py'
    config.write_text(f"_base_ = ['{H.TINY_SEG}']\n"
                      "trian_cfg = dict(max_iters=2)\n")
    proc = train(capsys, str(config), tmp_path / 'work', data_root)
    H.assert_one_line_error(
        proc, f"{config}: unknown top-level key 'trian_cfg' (did you mean "
        "'train_cfg'?)")


def test_work_dir_is_a_file(tmp_path, data_root, capsys):
    blocked = tmp_path / 'work'
    blocked.write_text('not a directory')
    proc = train(capsys, H.TINY_SEG, blocked, data_root)
    H.assert_one_line_error(proc, f'work dir {blocked} is a file')


def test_work_dir_below_a_file(tmp_path, data_root, capsys):
    (tmp_path / 'file').write_text('')
    work = tmp_path / 'file' / 'work'
    proc = train(capsys, H.TINY_SEG, work, data_root)
    H.assert_one_line_error(
        proc, f'work dir {work} is not a writable directory (Not a directory)')


@pytest.mark.skipif(os.geteuid() == 0,
                    reason='root writes into read-only directories')
def test_read_only_work_dir(tmp_path, data_root, capsys):
    work = tmp_path / 'work'
    work.mkdir()
    work.chmod(0o555)
    try:
        proc = train(capsys, H.TINY_SEG, work, data_root)
    finally:
        work.chmod(0o755)
    H.assert_one_line_error(
        proc, f'work dir {work} is not a writable directory')
