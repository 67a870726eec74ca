"""Robust{Det,Seg}LocalVisualizer draw what the stock visualisers refuse:
meta-less checkpoints (COCO/Cityscapes fallback names, short or missing
palettes) and all-VOID panoptic results.  Each ``test_stock_*`` pins the
upstream failure; when one fails, upstream fixed it and that part of the
subclass can go."""
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData

from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmseg.structures import SegDataSample
from mmseg.utils import get_classes
from mmseg.visualization import SegLocalVisualizer
from segext.visualization import (RobustDetLocalVisualizer,
                                  RobustSegLocalVisualizer, fallback_palette)

CLASSES = ('disk', 'box', 'triangle', 'sky', 'grass', 'sand')
PALETTE = [(220, 20, 60), (106, 0, 228), (250, 170, 30), (70, 130, 180),
           (107, 142, 35), (218, 190, 120)]
H, W = 32, 48


def image():
    return np.full((H, W, 3), 128, dtype=np.uint8)


def panoptic_sample(void_only=False, void=len(CLASSES)):
    pan = torch.full((1, H, W), void, dtype=torch.int64)
    if not void_only:
        pan[0, :, :24] = 3  # sky
        pan[0, 8:20, 30:42] = 0 + 1000  # disk, instance 1
    sample = DetDataSample()
    sample.pred_panoptic_seg = PixelData(sem_seg=pan)
    return sample


_names = iter(range(10**6))


def det_visualizer(cls, meta):
    vis = cls(name=f'det_vis_{next(_names)}')
    vis.dataset_meta = meta
    return vis


def seg_visualizer(cls):
    return cls(name=f'seg_vis_{next(_names)}')


def draw(vis, sample):
    vis.add_datasample('x', image(), sample, draw_gt=False)
    return vis.get_image()


def coco_meta():  # what init_detector/DetInferencer give a meta-less ckpt
    from mmdet.evaluation import get_classes as det_classes
    return dict(classes=det_classes('coco'), palette=PALETTE)


# ----------------------------------------------------------------- mmdet
def test_stock_det_refuses_meta_less_checkpoint_results():
    with pytest.raises(AssertionError, match='palette'):
        draw(det_visualizer(DetLocalVisualizer, coco_meta()),
             panoptic_sample())
    with pytest.raises(AssertionError, match='class information'):
        draw(det_visualizer(DetLocalVisualizer, {}), panoptic_sample())


def test_stock_det_crashes_on_all_void():
    with pytest.raises(ValueError, match='need at least one array'):
        draw(det_visualizer(DetLocalVisualizer, dict(
            classes=CLASSES, palette=PALETTE)), panoptic_sample(True))


@pytest.mark.parametrize('meta', [coco_meta(), {}, dict(classes=CLASSES)])
def test_det_draws_with_fallback_and_warns(meta):
    vis = det_visualizer(RobustDetLocalVisualizer, meta)
    with pytest.warns(UserWarning, match="fallback palette|'class <i>'"):
        drawn = draw(vis, panoptic_sample())
    assert drawn.shape == (H, W, 3)
    assert not np.array_equal(drawn, image())  # segments are painted
    assert len(vis.dataset_meta['palette']) >= len(vis.dataset_meta['classes'])
    assert meta.get('palette') in (None, PALETTE)  # caller's dict untouched


def test_det_keeps_a_complete_meta_as_is(recwarn):
    meta = dict(classes=CLASSES, palette=PALETTE)
    vis = det_visualizer(RobustDetLocalVisualizer, meta)
    robust = draw(vis, panoptic_sample())
    assert not [w for w in recwarn if 'fallback' in str(w.message)]
    stock = draw(det_visualizer(DetLocalVisualizer, meta), panoptic_sample())
    np.testing.assert_array_equal(robust, stock)
    assert vis.dataset_meta is meta


def test_det_all_void_draws_the_image():
    vis = det_visualizer(RobustDetLocalVisualizer,
                         dict(classes=CLASSES, palette=PALETTE))
    np.testing.assert_array_equal(draw(vis, panoptic_sample(True)), image())


# ----------------------------------------------------------------- mmseg
def seg_sample(labels):
    sample = SegDataSample()
    sample.pred_sem_seg = PixelData(data=torch.as_tensor(labels)[None])
    return sample


def test_stock_seg_refuses_short_palette():
    with pytest.raises(AssertionError, match='equal to palette'):
        SegLocalVisualizer(name=f'seg_vis_{next(_names)}').set_dataset_meta(
            CLASSES, PALETTE[:3])


@pytest.mark.parametrize('palette', [None, PALETTE[:3]])
def test_seg_fills_missing_palette(palette):
    vis = seg_visualizer(RobustSegLocalVisualizer)
    with pytest.warns(UserWarning, match='fallback palette'):
        vis.set_dataset_meta(CLASSES, palette)
    colors = [tuple(c) for c in vis.dataset_meta['palette']]
    given = len(palette or [])
    assert colors[:given] == PALETTE[:given]  # the given ones are kept
    assert colors[given:] == fallback_palette(len(CLASSES) - given, given)


def test_seg_draws_labels_beyond_the_names():
    """A 6-class model with 3 class names: label 5 is painted too."""
    vis = seg_visualizer(RobustSegLocalVisualizer)
    vis.set_dataset_meta(CLASSES[:3], PALETTE[:3])
    labels = np.zeros((H, W), dtype=np.int64)
    labels[:, 24:] = 5
    drawn = draw(vis, seg_sample(labels))
    assert not np.array_equal(drawn[:, 30], image()[:, 30])
    assert vis.dataset_meta['classes'][5] == 'class 5'


def test_seg_complete_meta_matches_stock():
    labels = np.zeros((H, W), dtype=np.int64)
    labels[:, 24:] = 2
    out = []
    for cls in (SegLocalVisualizer, RobustSegLocalVisualizer):
        vis = seg_visualizer(cls)
        vis.set_dataset_meta(get_classes('cityscapes'), None, 'cityscapes')
        out.append(draw(vis, seg_sample(labels)))
    np.testing.assert_array_equal(out[0], out[1])


# --------------------------------------------------------------- palette
def test_fallback_palette_is_deterministic_and_distinct():
    colors = fallback_palette(40)
    assert colors == fallback_palette(40)
    assert fallback_palette(10, start=30) == colors[30:]
    assert len(set(colors)) == 40
    assert all(0 <= c <= 255 for rgb in colors for c in rgb)
