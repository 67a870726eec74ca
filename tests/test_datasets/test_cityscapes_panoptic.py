"""Cityscapes panoptic in mmdet: CityscapesPanopticDataset,
CityscapesPanopticMetric and configs/_base_/datasets/cityscapes_panoptic.py,
on a tiny synthetic copy written by the 'cityscapes' layout (the files of
cityscapesscripts' createPanopticImgs), through stock mmdet transforms."""
import copy
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.registry import DATASETS, METRICS
from panopticapi.evaluation import pq_compute
from segext.datasets import CityscapesPanopticAPI, CityscapesPanopticDataset
from segext.datasets.cityscapes_panoptic import CITYSCAPES_LABEL_IDS
from segext.datasets.synthetic import generate

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASE = osp.join(ROOT, 'configs', '_base_', 'datasets',
                'cityscapes_panoptic.py')
SIZE = (64, 96)
NUM_TRAIN, NUM_VAL = 6, 10  # val image 9 has no things
CITIES = {'train': 'aachen', 'val': 'frankfurt'}
# cityscapesscripts' labels.py: train id -> mmdet label (things first)
THINGS_TRAIN_IDS = range(11, 19)  # person .. bicycle
# label id (instanceIds // 1000) -> mmdet label of the 8 thing classes
THING_LABEL = {24: 0, 25: 1, 26: 2, 27: 3, 28: 4, 31: 5, 32: 6, 33: 7}


def train_id_to_label(train_ids):
    lut = np.full(256, 255, np.int64)
    for t in range(19):
        lut[t] = t - 11 if t in THINGS_TRAIN_IDS else t + 8
    return lut[train_ids]


def read_ids(path):
    """COCO panoptic PNG -> segment ids (R + 256 G + 256^2 B)."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR).astype(np.int64)
    return bgr[..., 2] + 256 * bgr[..., 1] + 256 * 256 * bgr[..., 0]


def load_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cityscapes')) + '/'
    generate(root, layout='cityscapes', num_train=NUM_TRAIN,
             num_val=NUM_VAL, size=SIZE, seed=0)
    return root


@pytest.fixture(autouse=True)
def mmdet_scope():
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


@pytest.fixture(scope='module')
def cfg(data):
    cfg = Config.fromfile(BASE)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.dataset.data_root = data
        loader.num_workers = 0
        loader.persistent_workers = False
    cfg.val_evaluator.ann_file = data + 'gtFine/cityscapes_panoptic_val.json'
    cfg.val_evaluator.seg_prefix = data + 'gtFine/cityscapes_panoptic_val/'
    return cfg


def build(cfg, split, **overrides):
    loader = cfg.train_dataloader if split == 'train' else cfg.val_dataloader
    dataset_cfg = copy.deepcopy(loader.dataset)
    dataset_cfg.update(overrides)
    return DATASETS.build(dataset_cfg)


def gt_png(data, split, info):
    return read_ids(
        osp.join(data, 'gtFine', f'cityscapes_panoptic_{split}',
                 osp.basename(info['seg_map_path'])))


# --------------------------------------------------------------- dataset
def test_classes_in_mmdet_panoptic_order_with_cityscapes_label_ids():
    meta = CityscapesPanopticDataset.METAINFO
    assert meta['thing_classes'] == ('person', 'rider', 'car', 'truck', 'bus',
                                     'train', 'motorcycle', 'bicycle')
    assert meta['classes'][:8] == meta['thing_classes']
    assert meta['classes'][8:] == meta['stuff_classes']
    assert meta['stuff_classes'][0] == 'road' and len(meta['classes']) == 19
    assert meta['palette'][meta['classes'].index('car')] == (0, 0, 142)


@pytest.mark.parametrize('split', ['train', 'val'])
def test_loads_generated_layout_like_its_json(cfg, data, split):
    dataset = build(cfg, split)
    pan = load_json(f'{data}gtFine/cityscapes_panoptic_{split}.json')
    name_of = {c['id']: c['name'] for c in pan['categories']}
    classes = dataset.metainfo['classes']
    anns = {a['image_id']: a for a in pan['annotations']}
    assert len(dataset) == len(pan['images']) == len(anns)

    num_crowd = 0
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        image = pan['images'][i]
        ann = anns[info['img_id']]
        assert info['img_id'] == image['id'] and isinstance(info['img_id'],
                                                            str)
        # the image is found in its city folder; the PNG is the json's
        assert info['img_path'] == osp.join(data, 'leftImg8bit', split,
                                            CITIES[split], image['file_name'])
        assert osp.isfile(info['img_path'])
        assert info['seg_map_path'] == osp.join(
            data, 'gtFine', f'cityscapes_panoptic_{split}', ann['file_name'])

        segs = ann['segments_info']
        expected = [(s['id'], classes.index(name_of[s['category_id']]),
                     classes.index(name_of[s['category_id']]) < 8
                     and not s['iscrowd']) for s in segs]
        assert [(s['id'], s['category'], bool(s['is_thing']))
                for s in info['segments_info']] == expected
        assert [inst['bbox_label'] for inst in info['instances']
                ] == [label for _, label, thing in expected if thing]
        assert all(inst['ignore_flag'] == 0 for inst in info['instances'])
        num_crowd += sum(s['iscrowd'] for s in segs)
    assert num_crowd > 0, 'the tiny set should hold a crowd region'


def test_native_resolution_labels_match_cityscapes_pngs(cfg, data):
    """Stock LoadPanopticAnnotations + PackDetInputs on the dataset's infos:
    gt_sem_seg is labelTrainIds in mmdet's order, the instance masks are the
    instanceIds regions of the non-crowd things."""
    dataset = build(
        cfg,
        'val',
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadPanopticAnnotations'),
            dict(type='PackDetInputs')
        ])
    for i in range(len(dataset)):
        sample = dataset[i]['data_samples']
        stem = sample.img_id
        gt = osp.join(data, 'gtFine', 'val', 'frankfurt', stem + '_gtFine_')
        train_ids = cv2.imread(gt + 'labelTrainIds.png', cv2.IMREAD_UNCHANGED)
        instance_ids = cv2.imread(gt + 'instanceIds.png',
                                  cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(sample.gt_sem_seg.sem_seg[0].numpy(),
                                      train_id_to_label(train_ids))
        things = [
            s for s in dataset.get_data_info(i)['segments_info']
            if s['is_thing']
        ]
        masks = sample.gt_instances.masks.masks
        assert len(masks) == len(things) == len(sample.gt_instances.labels)
        for mask, seg, label in zip(masks, things,
                                    sample.gt_instances.labels.tolist()):
            np.testing.assert_array_equal(mask.astype(bool),
                                          instance_ids == seg['id'])
            assert label == seg['category'] == THING_LABEL[seg['id'] // 1000]


def test_train_pipeline_sample_packs_instances_and_semantic(cfg, data):
    dataset = build(cfg, 'train')
    torch.manual_seed(0)
    np.random.seed(0)
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        packed = dataset[i]
        sample = packed['data_samples']
        h, w = sample.img_shape
        assert packed['inputs'].shape == (3, h, w)
        assert 800 <= min(h, w) <= 1024 + 1 and max(h, w) <= 2048
        sx, sy = sample.scale_factor

        things = [s for s in info['segments_info'] if s['is_thing']]
        inst = sample.gt_instances
        assert inst.labels.tolist() == [s['category'] for s in things]
        assert len(inst.masks) == len(inst.bboxes) == len(things)
        ids = gt_png(data, 'train', info)
        for mask, seg in zip(inst.masks.masks, things):
            area = (ids == seg['id']).sum() * sx * sy
            assert mask.sum() == pytest.approx(area, rel=0.1)

        sem = sample.gt_sem_seg.sem_seg[0].numpy()
        assert sem.shape == (h, w)
        if sample.flip:
            sem = sem[:, ::-1]
        # sample the upscaled map at the centres of the original pixels
        ys = ((np.arange(SIZE[0]) + 0.5) * sy).astype(int)
        xs = ((np.arange(SIZE[1]) + 0.5) * sx).astype(int)
        back = sem[ys[:, None], xs[None, :]]
        stem = sample.img_id
        train_ids = cv2.imread(
            osp.join(data, 'gtFine', 'train', 'aachen',
                     stem + '_gtFine_labelTrainIds.png'), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(back, train_id_to_label(train_ids))


# ---------------------------------------------------------------- errors
def write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f)


def test_missing_image_names_its_path(cfg, data, tmp_path):
    pan = load_json(f'{data}gtFine/cityscapes_panoptic_val.json')
    missing = 'frankfurt_999999_000019'
    pan['images'].append(
        dict(pan['images'][0], id=missing,
             file_name=missing + '_leftImg8bit.png'))
    pan['annotations'].append(
        dict(pan['annotations'][0], image_id=missing,
             file_name=missing + '_gtFine_panoptic.png'))
    write_json(tmp_path / 'pan.json', pan)
    with pytest.raises(FileNotFoundError) as err:
        build(cfg, 'val', ann_file=str(tmp_path / 'pan.json'))
    assert (f'leftImg8bit/val/frankfurt/{missing}_leftImg8bit.png'
            in str(err.value))


@pytest.mark.parametrize('bad, message', [
    ('segment', "category id 4 is not among the label ids"),
    ('train_id', "has id 0, expected its Cityscapes label id 7"),
    ('name', "'ground' (id 6) is not one of the 19"),
    ('isthing', "'car' has isthing=0, but it is a Cityscapes thing class"),
])
def test_bad_categories_are_named(cfg, data, tmp_path, bad, message):
    pan = load_json(f'{data}gtFine/cityscapes_panoptic_val.json')
    if bad == 'segment':  # 'static' (label id 4), not evaluated
        pan['annotations'][2]['segments_info'][0]['category_id'] = 4
    elif bad == 'train_id':  # createPanopticImgs --use-train-id
        for cat in pan['categories']:
            cat['id'] = pan['categories'].index(cat)
    elif bad == 'name':
        pan['categories'].append(dict(pan['categories'][0], id=6,
                                      name='ground'))
    else:
        next(c for c in pan['categories'] if c['name'] == 'car')['isthing'] = 0
    write_json(tmp_path / 'pan.json', pan)
    with pytest.raises(ValueError, match='pan.json') as err:
        build(cfg, 'val', ann_file=str(tmp_path / 'pan.json'))
    assert message in str(err.value)
    if bad == 'segment':
        assert f"image {pan['annotations'][2]['image_id']!r}" in str(
            err.value)


# ---------------------------------------------------------------- metric
def gt_as_prediction(data, info, relabel=None):
    """The panoptic PNG as an mmdet prediction: label + k * INSTANCE_OFFSET
    for thing k, label for stuff and crowd, len(classes) for void."""
    ids = gt_png(data, 'val', info)
    pan = np.full(ids.shape, 19, np.int64)
    for k, seg in enumerate(info['segments_info']):
        label = relabel.get(seg['id'], seg['category']) if relabel else seg[
            'category']
        pan[ids == seg['id']] = label + (k + 1) * INSTANCE_OFFSET * (
            seg['is_thing'])
    return dict(
        img_id=info['img_id'],
        img_path=info['img_path'],
        ori_shape=ids.shape,
        pred_panoptic_seg=dict(sem_seg=torch.from_numpy(pan[None])))


def evaluate(cfg, data, dataset, relabel=None, **metric_args):
    metric = METRICS.build(dict(cfg.val_evaluator, **metric_args))
    metric.dataset_meta = dataset.metainfo
    for i in range(0, len(dataset), 2):  # batches of 2
        infos = [dataset.get_data_info(j) for j in (i, i + 1)
                 if j < len(dataset)]
        metric.process({},
                       [gt_as_prediction(data, x, relabel) for x in infos])
    return metric.evaluate(len(dataset))


@pytest.mark.parametrize('outfile', [False, True])
def test_metric_gt_as_prediction_is_pq_100(cfg, data, tmp_path, outfile):
    dataset = build(cfg, 'val', pipeline=[])
    kwargs = dict(outfile_prefix=str(tmp_path / 'res'), nproc=1) \
        if outfile else {}
    res = evaluate(cfg, data, dataset, **kwargs)
    for key in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'):
        assert res[f'coco_panoptic/{key}'] == pytest.approx(100.0), key
    if outfile:  # predictions were written next to the json
        written = os.listdir(tmp_path / 'res.panoptic')
        assert len(written) == len(dataset)


def test_metric_counts_a_wrong_thing_class_as_panopticapi(
        cfg, data, tmp_path):
    """One car predicted as truck: a false negative (car) and a false
    positive (truck) among the things, stuff stays perfect; the written
    results json + PNGs (category ids = label ids, as the official
    evaluation wants) score the same in panopticapi's own pq_compute."""
    dataset = build(cfg, 'val', pipeline=[])
    classes = dataset.metainfo['classes']
    car = next(s for i in range(len(dataset))
               for s in dataset.get_data_info(i)['segments_info']
               if s['is_thing'] and classes[s['category']] == 'car')
    prefix = str(tmp_path / 'res')
    res = evaluate(cfg, data, dataset, outfile_prefix=prefix, nproc=1,
                   relabel={car['id']: classes.index('truck')})
    assert res['coco_panoptic/PQ_st'] == pytest.approx(100.0)
    assert 0 < res['coco_panoptic/PQ_th'] < 100.0

    ref = pq_compute(cfg.val_evaluator.ann_file, prefix + '.panoptic.json',
                     cfg.val_evaluator.seg_prefix, prefix + '.panoptic')
    for key, name in (('PQ', 'All'), ('PQ_th', 'Things'), ('PQ_st', 'Stuff')):
        assert res[f'coco_panoptic/{key}'] == pytest.approx(
            100 * ref[name]['pq'])
    truck = CITYSCAPES_LABEL_IDS['truck']
    assert ref['per_class'][truck]['pq'] == 0.0  # counted: one FP


# ---------------------------------------------------------------- config
def test_base_config_is_the_upsnet_cityscapes_recipe():
    raw = Config.fromfile(BASE)
    # set by the inheriting config: mmengine refuses a key two bases set
    assert 'custom_imports' not in raw
    assert raw.data_root == 'data/cityscapes/'
    train, val = raw.train_dataloader, raw.val_dataloader
    assert train.batch_size == 2  # x 8 GPUs = 16
    assert train.dataset.type == val.dataset.type == \
        'CityscapesPanopticDataset'
    assert train.dataset.ann_file == 'gtFine/cityscapes_panoptic_train.json'
    assert train.dataset.data_prefix == dict(
        img='leftImg8bit/train/', seg='gtFine/cityscapes_panoptic_train/')
    assert val.dataset.data_prefix == dict(
        img='leftImg8bit/val/', seg='gtFine/cityscapes_panoptic_val/')
    resize = next(t for t in train.dataset.pipeline
                  if t.type == 'RandomResize')
    assert [tuple(s) for s in resize.scale] == [(2048, 800), (2048, 1024)]
    assert resize.keep_ratio
    assert any(t.type == 'RandomFlip' and t.prob == 0.5
               for t in train.dataset.pipeline)
    test_resize = next(t for t in val.dataset.pipeline if t.type == 'Resize')
    assert tuple(test_resize.scale) == (2048, 1024)
    assert raw.val_evaluator.type == 'CityscapesPanopticMetric'
    assert raw.val_evaluator.ann_file == \
        'data/cityscapes/gtFine/cityscapes_panoptic_val.json'
    assert raw.val_evaluator.seg_prefix == \
        'data/cityscapes/gtFine/cityscapes_panoptic_val/'
    assert raw.test_dataloader == val and raw.test_evaluator == \
        raw.val_evaluator


def test_base_config_builds_loaders_and_evaluator(cfg):
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    batch = next(iter(loader))
    assert len(batch['inputs']) == 2
    for sample in batch['data_samples']:
        assert sample.img_id.startswith('aachen_')
        assert 'gt_sem_seg' in sample and 'gt_instances' in sample
    val_loader = Runner.build_dataloader(cfg.val_dataloader, seed=0)
    sample = next(iter(val_loader))['data_samples'][0]
    assert sample.img_shape == (1024, 1536)  # 64x96 scaled to (2048, 1024)
    metric = METRICS.build(cfg.val_evaluator)
    # the metric reads the val json through the Cityscapes-aware API (public
    # state only: its categories and the API's image index)
    api = CityscapesPanopticAPI(cfg.val_evaluator.ann_file)
    assert metric.categories == api.cats
    assert api.imgs[sample.img_id]['segm_file'] == \
        sample.img_id + '_gtFine_panoptic.png'
