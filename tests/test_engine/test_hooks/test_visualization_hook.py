"""PNGDetVisualizationHook: a JPEG input gives a PNG overlay under
WORK_DIR/TIMESTAMP/DIR, drawn by the visualiser's own (unreplaced) method."""
import os.path as osp
from types import SimpleNamespace

import cv2
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import PixelData

from segext.engine.hooks import PNGDetVisualizationHook


def test_jpeg_input_gives_png_overlay(tmp_path):
    image = tmp_path / '000001.jpg'
    cv2.imwrite(str(image), np.full((16, 24, 3), 128, np.uint8))
    visualizer = DetLocalVisualizer.get_instance(
        'png_hook_test', vis_backends=[dict(type='LocalVisBackend')],
        save_dir=str(tmp_path / 'vis_data'))
    visualizer.dataset_meta = dict(
        classes=('a', 'b'), thing_classes=('a', ), stuff_classes=('b', ),
        palette=[(255, 0, 0), (0, 255, 0)])
    hook = PNGDetVisualizationHook(draw=True, test_out_dir='vis')
    sample = DetDataSample(metainfo=dict(img_path=str(image)))
    pan = torch.ones(1, 16, 24, dtype=torch.int32)  # all stuff 'b'
    sample.pred_panoptic_seg = PixelData(sem_seg=pan)
    runner = SimpleNamespace(work_dir=str(tmp_path), timestamp='20260101')
    hook.after_test_iter(runner, 0, {}, [sample])
    out = tmp_path / '20260101' / 'vis' / '000001.png'
    assert out.is_file()
    assert cv2.imread(str(out)).shape[0] == 16
    assert not (tmp_path / '20260101' / 'vis' / '000001.jpg').exists()
    # the visualiser's method is the class's, never swapped on the instance
    assert 'add_datasample' not in vars(visualizer)
