"""The main job's / comparison's run helpers: the terminal progress view of
mmengine's log lines, the class-wise PQ table as mmdet prints it, and the
combined picture."""
import os.path as osp

import cv2
import numpy as np
import pytest
from mmdet.evaluation.metrics.coco_panoptic_metric import print_panoptic_table
from mmengine.logging import MMLogger

from segext.utils.panoptic_runs import (montage, overlay_panels,
                                        progress_line, read_classwise)

TRAIN_LINE = (
    '12/01 21:01:13 - mmengine - INFO - Iter(train) [ 40/360]  lr: 3.8e-03  '
    'eta: 0:07:00  time: 1.0293  data_time: 0.0458  grad_norm: 22.49  '
    'loss: 4.4684  loss_rpn_cls: 0.6806  loss_mask: 1.8650')
TEST_LINE = ('12/01 21:13:15 - mmengine - INFO - Iter(test) [10/64]    '
             'eta: 0:04:10  time: 4.6350  data_time: 0.0240')


def test_progress_line_shows_iteration_loss_and_eta():
    shown = progress_line(TRAIN_LINE, 'upsnet')
    assert shown.startswith('upsnet')
    for part in ('train', '40/360', 'loss  4.468', '1.03 s/it',
                 'eta 0:07:00'):
        assert part in shown, part
    assert 'loss_rpn_cls' not in shown  # the total only; the rest in the log
    test = progress_line(TEST_LINE, 'upsnet')
    assert '10/64' in test and 'eta 0:04:10' in test and 'loss' not in test


@pytest.mark.parametrize('line', [
    '12/01 20:58:53 - mmengine - INFO - Checkpoints will be saved to x.',
    'Panoptic Evaluation Results:', ''
])
def test_progress_line_keeps_other_lines_in_the_log_only(line):
    assert progress_line(line, 'upsnet') is None


def test_read_classwise_parses_mmdets_table(tmp_path):
    log_file = str(tmp_path / 'test.log')
    logger = MMLogger.get_instance('test_read_classwise', log_file=log_file)
    names = ('disk', 'box', 'triangle', 'sky', 'grass')  # odd: a short row
    classwise = {n: dict(pq=0.1 * i, sq=0.5, rq=0.01 * i)
                 for i, n in enumerate(names, 1)}
    overall = {k: dict(pq=0.5, sq=0.6, rq=0.7, n=3)
               for k in ('All', 'Things', 'Stuff')}
    print_panoptic_table(overall, classwise, logger=logger)
    for handler in logger.handlers:
        handler.flush()
    got = read_classwise(log_file)
    assert list(got) == list(names)
    assert got['triangle'] == dict(PQ=30.0, SQ=50.0, RQ=3.0)
    assert got['grass']['PQ'] == pytest.approx(50.0)


def test_read_classwise_without_a_table(tmp_path):
    path = tmp_path / 'test.log'
    path.write_text('Panoptic Evaluation Results:\n')
    assert read_classwise(str(path)) == {}


def test_overlay_panels_and_montage(tmp_path):
    h, w = 96, 128
    root = tmp_path / 'data'
    (root / 'val2017').mkdir(parents=True)
    image = np.full((h, w, 3), (10, 20, 30), np.uint8)  # RGB
    cv2.imwrite(str(root / 'val2017' / '000001000001.jpg'),
                cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    overlay = np.zeros((h, 2 * w, 3), np.uint8)
    overlay[:, :w] = (200, 0, 0)  # ground truth half, RGB
    overlay[:, w:] = (0, 200, 0)  # prediction half
    vis = tmp_path / 'vis' / '000001000001.png'
    vis.parent.mkdir()
    cv2.imwrite(str(vis), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))

    img, gt, pred = overlay_panels(str(vis), str(root))
    assert img.shape == gt.shape == pred.shape == (h, w, 3)
    assert np.abs(img.astype(int) - (10, 20, 30)).max() <= 3  # JPEG
    assert tuple(gt[0, 0]) == (200, 0, 0) and tuple(pred[0, 0]) == (0, 200, 0)

    out = montage([[img, gt, pred]] * 2, ['image', 'ground truth', 'UPSNet'],
                  str(tmp_path / 'out' / 'grid.png'))
    grid = cv2.cvtColor(cv2.imread(out), cv2.COLOR_BGR2RGB)
    scale = 2  # 128-px panels are enlarged to 256
    assert grid.shape[1] == 3 * (w * scale + 4)
    assert grid.shape[0] > 2 * h * scale
    band = 22
    # the second column of the first row is the ground truth, enlarged
    assert tuple(grid[band + 5, w * scale + 4 + 5]) == (200, 0, 0)
    assert osp.basename(out) == 'grid.png'
