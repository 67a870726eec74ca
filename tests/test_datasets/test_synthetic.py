"""Tests of the synthetic dataset generator (segext.datasets.synthetic) and
of its two base configs, through the stock mmdet / mmseg loaders."""
import filecmp
import importlib.util
import json
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

from segext.datasets.synthetic import (LAYOUTS, SYNTHETIC_METAINFO,
                                       SceneRenderer, generate, image_rng)

SIZE = (64, 96)
NUM_TRAIN, NUM_VAL = 12, 4


def _rglob(root):
    return sorted(
        osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root)
        for f in fs)


def _read_ids(path):
    """COCO panoptic PNG -> ids (id = R + 256 G + 256^2 B)."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR).astype(np.int64)
    return bgr[..., 2] + 256 * bgr[..., 1] + 256 * 256 * bgr[..., 0]


def _read_semantic(root, record):
    """The 'coco' layouts' semantic PNG of a generator record."""
    path = osp.join(root, 'semantic', record['file_name'][:-4] + '.png')
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def _load_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    info = generate(root, num_train=NUM_TRAIN, num_val=NUM_VAL, size=SIZE)
    return root, info


def _cfg(repo_root, name, root):
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs', '_base_', 'datasets', name))
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.dataset.data_root = root
    return cfg


# ---------------------------------------------------------- the renderer
def test_scene_partition_and_things():
    renderer = SceneRenderer((96, 128))
    seen = dict(touch=0, overlap=0, crowd=0, void=0)
    for i in range(24):
        scene = renderer(image_rng(0, 0, i), empty=(i == 5))
        cover = scene.void.astype(int)
        for seg in scene.segments:
            cover += seg.mask
            assert seg.area > 0
        assert (cover == 1).all(), 'segments + void must partition the image'
        things = scene.things
        if i == 5:
            assert not things and not any(s.isthing for s in scene.segments)
            continue
        assert 1 <= len(things) <= 6
        for k, a in enumerate(things):
            ys, xs = np.nonzero(a.amodal)
            assert min(np.ptp(xs), np.ptp(ys)) + 1 >= 12
            assert a.area >= 0.55 * a.amodal.sum()
            for b in things[k + 1:]:  # b drawn later: it occludes a
                both = a.amodal & b.amodal
                if both.any():
                    seen['overlap'] += 1
                    assert not (a.mask & both).any()
                    assert (b.mask & both).any()
                else:
                    grown = cv2.dilate(a.mask.astype(np.uint8),
                                       np.ones((3, 3), np.uint8))
                    seen['touch'] += bool((grown.astype(bool) & b.mask).any())
        seen['crowd'] += any(s.iscrowd for s in scene.segments)
        seen['void'] += bool(scene.void.any())
    assert all(v > 0 for v in seen.values()), seen


# -------------------------------------------------------- determinism
def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(num_train=3, num_val=1, size=SIZE)
    generate(str(tmp_path / 'a'), seed=3, **kw)
    generate(str(tmp_path / 'b'), seed=3, **kw)
    generate(str(tmp_path / 'c'), seed=4, **kw)
    files = _rglob(tmp_path / 'a')
    assert files == _rglob(tmp_path / 'b') == _rglob(tmp_path / 'c')
    assert len(files) == 4 * 3 + 4  # jpg + 3 pngs per image, 4 json
    _, mismatch, errors = filecmp.cmpfiles(
        tmp_path / 'a', tmp_path / 'b', files, shallow=False)
    assert not mismatch and not errors
    _, mismatch, _ = filecmp.cmpfiles(
        tmp_path / 'a', tmp_path / 'c', files, shallow=False)
    assert 'train2017/000000000001.jpg' in mismatch


# ------------------------------------------------- 'coco' file contents
def test_coco_panoptic_png_matches_json_and_record(coco):
    root, info = coco
    assert info['splits']['train']['num_empty'] == 1  # index 9
    for split in ('train', 'val'):
        pan = _load_json(f'{root}/annotations/panoptic_{split}2017.json')
        cats = {c['id']: c for c in pan['categories']}
        assert [c['name'] for c in pan['categories']] == list(
            SYNTHETIC_METAINFO['classes'])
        assert [c['isthing'] for c in pan['categories']] == [1] * 3 + [0] * 3
        records = info['splits'][split]['images']
        assert len(pan['images']) == len(pan['annotations']) == len(records)
        for img, ann, rec in zip(pan['images'], pan['annotations'], records):
            assert (img['height'], img['width']) == SIZE
            assert rec['file_name'] == f"{split}2017/{img['file_name']}"
            ids = _read_ids(
                f"{root}/annotations/panoptic_{split}2017/{ann['file_name']}")
            sem = cv2.imread(f"{root}/semantic/{split}2017/"
                             f"{ann['file_name']}", cv2.IMREAD_UNCHANGED)
            assert sem.dtype == np.uint8 and sem.ndim == 2
            infos = ann['segments_info']
            assert set(np.unique(ids)) - {0} == {s['id'] for s in infos}
            assert ((ids == 0) == (sem == 255)).all()
            for s, r in zip(infos, rec['segments']):
                mask = ids == s['id']
                ys, xs = np.nonzero(mask)
                assert s['area'] == mask.sum() == r['area']
                assert s['bbox'] == r['bbox'] == [
                    xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
                assert cats[s['category_id']]['name'] == r['category']
                assert s['iscrowd'] == r['iscrowd']
                assert (sem[mask] == s['category_id'] - 1).all()
                assert r['label'] == s['category_id'] - 1


def test_coco_instances_json_consistent_with_panoptic(coco):
    from pycocotools.coco import COCO
    root, _ = coco
    num_crowd = 0
    for split in ('train', 'val'):
        num_crowd += _check_instances(
            COCO(f'{root}/annotations/instances_{split}2017.json'),
            _load_json(f'{root}/annotations/panoptic_{split}2017.json'),
            f'{root}/annotations/panoptic_{split}2017')
    assert num_crowd > 0  # the RLE path is exercised


def _check_instances(inst, pan, pan_dir):
    assert sorted(inst.getCatIds()) == [1, 2, 3]
    num_crowd = 0
    for ann in pan['annotations']:
        ids = _read_ids(f"{pan_dir}/{ann['file_name']}")
        things = [s for s in ann['segments_info'] if s['category_id'] <= 3]
        anns = inst.loadAnns(inst.getAnnIds(imgIds=[ann['image_id']]))
        assert len(anns) == len(things)
        for a in anns:
            mask = inst.annToMask(a).astype(bool)
            seg_ids = np.unique(ids[mask])
            assert len(seg_ids) == 1  # exactly one panoptic segment ...
            seg = next(s for s in things if s['id'] == seg_ids[0])
            assert (mask == (ids == seg['id'])).all()  # ... and all of it
            assert a['area'] == mask.sum() == seg['area']
            assert a['bbox'] == seg['bbox']
            assert a['iscrowd'] == seg['iscrowd']
            assert isinstance(a['segmentation'],
                              dict if a['iscrowd'] else list)
            num_crowd += a['iscrowd']
    assert len(inst.getAnnIds(iscrowd=False)) > 0
    return num_crowd


# ------------------------------------------------- stock mmdet / mmseg
def test_coco_loads_in_mmdet_coco_panoptic_dataset(coco, repo_root):
    from mmdet.registry import DATASETS
    root, info = coco
    cfg = _cfg(repo_root, 'synthetic_panoptic.py', root)
    with DefaultScope.overwrite_default_scope('mmdet'):
        train = DATASETS.build(cfg.train_dataloader.dataset)
        val = DATASETS.build(cfg.val_dataloader.dataset)
        assert len(train) == NUM_TRAIN  # the empty image is kept
        assert len(train.get_data_info(9)['instances']) == 0
        assert train[9]['data_samples'].gt_instances.labels.numel() == 0
        for i, rec in enumerate(info['splits']['val']['images']):
            sample = val[i]['data_samples']
            want = sorted(s['label'] for s in rec['segments']
                          if s['label'] < 3 and not s['iscrowd'])
            assert sorted(sample.gt_instances.labels.tolist()) == want
            assert len(sample.gt_instances.masks) == len(want)
            assert len(sample.ignored_instances) == sum(
                s['iscrowd'] for s in rec['segments'])
            sem = _read_semantic(root, rec)
            gt = sample.gt_sem_seg.sem_seg[0].numpy()
            assert (gt == sem).all()
            assert set(np.unique(gt)) == {s['label'] for s in rec['segments']
                                          } | ({255} if (sem == 255).any()
                                               else set())


def test_coco_loads_in_mmseg_base_seg_dataset(coco, repo_root):
    from mmseg.registry import DATASETS
    root, info = coco
    cfg = _cfg(repo_root, 'synthetic_semantic.py', root)
    with DefaultScope.overwrite_default_scope('mmseg'):
        val = DATASETS.build(cfg.val_dataloader.dataset)
        train = DATASETS.build(cfg.train_dataloader.dataset)
        assert len(train) == NUM_TRAIN and len(val) == NUM_VAL
        assert val.metainfo['classes'] == SYNTHETIC_METAINFO['classes']
        sample = train[0]  # randomly resized around 256x192, cropped to it
        h, w = sample['inputs'].shape[-2:]
        assert h <= 192 and w <= 256 and (h, w) != SIZE
        assert sample['data_samples'].gt_sem_seg.data.shape[-2:] == (h, w)
        for i, rec in enumerate(info['splits']['val']['images']):
            gt = val[i]['data_samples'].gt_sem_seg.data[0].numpy()
            labels = set(np.unique(gt)) - {255}
            assert labels == {s['label'] for s in rec['segments']}


def _panoptic_prediction(ids, infos, label_of, void, drop=None):
    """mmdet's pred_panoptic_seg encoding (label + k * INSTANCE_OFFSET) of
    a ground truth; crowds, void and the ``drop``-ped segment become VOID."""
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    pan = np.full(ids.shape, void, np.int64)
    for k, s in enumerate(infos):
        if s['iscrowd'] or s['id'] == drop:  # (only within one image)
            continue
        label = label_of[s['category_id']]
        pan[ids == s['id']] = label + (k + 1) * INSTANCE_OFFSET * (label < 3)
    return torch.from_numpy(pan)[None]


def _evaluate_pq(root, cfg, drop=None):
    from mmdet.registry import METRICS
    with DefaultScope.overwrite_default_scope('mmdet'):
        metric = METRICS.build(cfg.val_evaluator[0])
    metric.dataset_meta = dict(SYNTHETIC_METAINFO)
    pan = _load_json(f'{root}/annotations/panoptic_val2017.json')
    label_of = {c['id']: k for k, c in enumerate(pan['categories'])}
    for img, ann in zip(pan['images'], pan['annotations']):
        ids = _read_ids(f"{root}/annotations/panoptic_val2017/"
                        f"{ann['file_name']}")
        pred = _panoptic_prediction(
            ids, ann['segments_info'], label_of, len(label_of),
            drop[1] if drop and drop[0] == img['id'] else None)
        metric.process({}, [dict(
            img_id=img['id'], img_path=f"{root}/val2017/{img['file_name']}",
            ori_shape=ids.shape, pred_panoptic_seg=dict(sem_seg=pred))])
    return metric.evaluate(len(pan['images'])), pan


def test_coco_panoptic_metric_gt_as_prediction(coco, repo_root):
    root, _ = coco
    cfg = _cfg(repo_root, 'synthetic_panoptic.py', root)
    cfg.val_evaluator[0].ann_file = f'{root}/annotations/panoptic_val2017.json'
    cfg.val_evaluator[0].seg_prefix = f'{root}/annotations/panoptic_val2017/'
    res, pan = _evaluate_pq(root, cfg)
    for key in ('PQ', 'SQ', 'RQ', 'PQ_th', 'SQ_th', 'RQ_th', 'PQ_st',
                'SQ_st', 'RQ_st'):
        assert res[f'coco_panoptic/{key}'] == pytest.approx(100.0), key

    # drop one non-crowd thing: it becomes one false negative of its class
    ann = pan['annotations'][0]
    dropped = next(s for s in ann['segments_info']
                   if s['category_id'] <= 3 and not s['iscrowd'])
    res, _ = _evaluate_pq(root, cfg, drop=(ann['image_id'], dropped['id']))
    segs = [s for a in pan['annotations'] for s in a['segments_info']]
    counts = {c: sum(s['category_id'] == c and not s['iscrowd'] for s in segs)
              for c in range(1, 7)}
    per_class = {}
    for c, n in counts.items():
        if n == 0:
            continue  # absent class: not averaged
        tp = n - (c == dropped['category_id'])
        per_class[c] = tp / (tp + 0.5 * (n - tp))  # IoU of every TP is 1
    things = [v for c, v in per_class.items() if c <= 3]
    stuff = [v for c, v in per_class.items() if c > 3]
    assert res['coco_panoptic/PQ_th'] == pytest.approx(
        100 * np.mean(things))
    assert res['coco_panoptic/PQ_st'] == pytest.approx(100.0)
    assert res['coco_panoptic/PQ'] == pytest.approx(
        100 * np.mean(things + stuff))
    assert res['coco_panoptic/SQ'] == pytest.approx(100.0)


# ------------------------------------------------------ other layouts
def test_coco_categories_loads_with_stock_mmdet_config(tmp_path):
    from mmdet.datasets import CocoPanopticDataset
    from mmdet.registry import DATASETS
    root = str(tmp_path)
    info = generate(root, layout='coco-categories', num_train=4, num_val=2,
                    size=SIZE)
    pan = _load_json(f'{root}/annotations/panoptic_val2017.json')
    by_name = {c['name']: c for c in pan['categories']}
    meta = CocoPanopticDataset.METAINFO
    assert list(by_name) == list(meta['classes'])
    # real COCO panoptic ids / colours of the categories drawn
    assert {n: (by_name[n]['id'], tuple(by_name[n]['color']))
            for n in ('person', 'car', 'dog', 'sky-other-merged',
                      'grass-merged', 'sand')} == {
        'person': (1, (220, 20, 60)), 'car': (3, (0, 0, 142)),
        'dog': (18, (0, 226, 252)), 'sky-other-merged': (187, (70, 130, 180)),
        'grass-merged': (193, (152, 251, 152)), 'sand': (154, (254, 212, 124))}
    assert sum(c['isthing'] for c in pan['categories']) == 80

    stock = Config.fromfile(osp.join(
        osp.dirname(importlib.util.find_spec('mmdet').origin), '.mim',
        'configs', '_base_', 'datasets', 'coco_panoptic.py'))
    stock.val_dataloader.dataset.data_root = root
    with DefaultScope.overwrite_default_scope('mmdet'):
        val = DATASETS.build(stock.val_dataloader.dataset)
        assert len(val) == 2
        labels = {meta['classes'].index(n)
                  for n in ('person', 'car', 'dog', 'sky-other-merged',
                            'grass-merged', 'sand')}
        for i, rec in enumerate(info['splits']['val']['images']):
            sample = val[i]['data_samples']
            gt = sample.gt_sem_seg.sem_seg[0].numpy()
            sem = _read_semantic(root, rec)
            assert (gt == sem).all()
            assert set(np.unique(gt)) - {255} <= labels
            assert set(sample.gt_instances.labels.tolist()) <= {0, 2, 16}
            assert {meta['classes'][k] for k in np.unique(gt) if k < 255} == {
                s['category'] for s in rec['segments']}


def test_cityscapes_layout(tmp_path):
    from mmseg.registry import DATASETS
    root = str(tmp_path)
    info = generate(root, layout='cityscapes', num_train=3, num_val=10,
                    size=SIZE)
    with DefaultScope.overwrite_default_scope('mmseg'):
        val = DATASETS.build(dict(
            type='CityscapesDataset', data_root=root,
            data_prefix=dict(img_path='leftImg8bit/val',
                             seg_map_path='gtFine/val'),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations'),
                      dict(type='PackSegInputs')]))
        assert len(val) == 10
        for i in range(len(val)):
            gt = val[i]['data_samples'].gt_sem_seg.data[0].numpy()
            # road, vegetation, sky, person, car, bicycle train ids + ignore
            assert set(np.unique(gt)) <= {0, 8, 10, 11, 13, 18, 255}

    pan = _load_json(f'{root}/gtFine/cityscapes_panoptic_val.json')
    assert len(pan['categories']) == 19
    assert sorted(c['id'] for c in pan['categories'] if c['isthing']) == [
        24, 25, 26, 27, 28, 31, 32, 33]
    num_crowd = 0
    for img, ann, rec in zip(pan['images'], pan['annotations'],
                             info['splits']['val']['images']):
        stem = img['id']
        city = stem.split('_')[0]
        assert rec['file_name'] == (f'leftImg8bit/val/{city}/'
                                    f"{img['file_name']}")
        gt = f'{root}/gtFine/val/{city}/{stem}_gtFine_'
        label_ids = cv2.imread(gt + 'labelIds.png', cv2.IMREAD_UNCHANGED)
        inst = cv2.imread(gt + 'instanceIds.png', cv2.IMREAD_UNCHANGED)
        assert inst.dtype == np.uint16
        ids = _read_ids(f"{root}/gtFine/cityscapes_panoptic_val/"
                        f"{ann['file_name']}")
        # panoptic id == instanceIds value, except unlabeled (void)
        assert (ids == np.where(label_ids == 0, 0, inst)).all()
        assert (np.where(inst >= 1000, inst // 1000, inst) == label_ids).all()
        assert set(np.unique(ids)) - {0} == {
            s['id'] for s in ann['segments_info']}
        for s in ann['segments_info']:
            assert s['area'] == (ids == s['id']).sum()
            if s['iscrowd'] or s['category_id'] < 24:
                assert s['id'] == s['category_id']
            else:
                assert s['id'] // 1000 == s['category_id']
            num_crowd += s['iscrowd']
    assert num_crowd == info['splits']['val']['num_crowd'] > 0


def test_voc_layout(tmp_path):
    from mmseg.registry import DATASETS
    root = str(tmp_path)
    generate(root, layout='voc', num_train=4, num_val=2, size=SIZE)
    voc = f'{root}/VOCdevkit/VOC2012'
    with DefaultScope.overwrite_default_scope('mmseg'):
        train = DATASETS.build(dict(
            type='PascalVOCDataset', data_root=voc,
            data_prefix=dict(img_path='JPEGImages',
                             seg_map_path='SegmentationClass'),
            ann_file='ImageSets/Segmentation/train.txt',
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations'),
                      dict(type='PackSegInputs')]))
        assert len(train) == 4
        for i in range(4):
            gt = train[i]['data_samples'].gt_sem_seg.data[0].numpy()
            # background, boat, car, person + borders
            assert set(np.unique(gt)) <= {0, 4, 7, 15, 255}
            assert {255, 0} < set(np.unique(gt))  # objects have borders
    with open(f'{voc}/ImageSets/Segmentation/train.txt') as f:
        name = f.readline().strip()
    png = Image.open(f'{voc}/SegmentationClass/{name}.png')
    assert png.mode == 'P'
    assert png.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
    with open(f'{voc}/ImageSets/Segmentation/trainval.txt') as f:
        assert len(f.read().split()) == 6


def test_camvid_layout(tmp_path):
    root = str(tmp_path)
    generate(root, layout='camvid', num_train=3, num_val=2, size=SIZE)
    for split, n in (('train', 3), ('val', 2), ('test', 2)):
        with open(f'{root}/CamVid/{split}.txt') as f:
            lines = f.read().splitlines()
        assert len(lines) == n
        for line in lines:
            img, ann = line.split(' ')
            assert img.startswith(f'/SegNet/CamVid/{split}/')
            assert ann == img.replace(f'/{split}/', f'/{split}annot/')
            rel = img[len('/SegNet/'):]
            image = cv2.imread(f'{root}/{rel}')
            label = cv2.imread(f"{root}/{ann[len('/SegNet/'):]}",
                               cv2.IMREAD_UNCHANGED)
            assert image.shape == SIZE + (3, )
            assert label.dtype == np.uint8 and label.shape == SIZE
            assert label.max() <= 11


# ------------------------------------------------------- input checking
def test_generate_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown layout 'kitti'.*camvid"):
        generate(str(tmp_path), layout='kitti')
    with pytest.raises(ValueError, match=r'size must be \(H, W\).*\(8, 96\)'):
        generate(str(tmp_path), size=(8, 96))
    with pytest.raises(ValueError, match='num_train must be an int.*0'):
        generate(str(tmp_path), num_train=0)
    with pytest.raises(ValueError, match='seed must be a non-negative'):
        generate(str(tmp_path), seed=-1)
    assert not os.listdir(tmp_path)  # nothing written on bad input


@pytest.fixture(scope='module')
def cli(repo_root):
    path = osp.join(repo_root, 'tools', 'dataset_converters',
                    'generate_synthetic.py')
    spec = importlib.util.spec_from_file_location('generate_synthetic', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_cli_errors_and_overwrite(cli, tmp_path, capsys):
    out = str(tmp_path / 'out')

    def fails(argv, message):
        with pytest.raises(SystemExit) as exc:
            cli(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert re.search(message, err), err

    fails([out, '--layout', 'kitti'], "invalid choice: 'kitti'")
    fails([out, '--size', '0', '96'], r'size must be .*got \(0, 96\)')
    args = [out, '--num-train', '1', '--num-val', '1', '--size', '32', '48']
    cli(args)
    assert 'coco train: 1 images' in capsys.readouterr().out
    fails(args, r"already contains \[.*'train2017'.*--overwrite")
    before = sorted(os.listdir(out))
    cli(args + ['--overwrite', '--seed', '1'])
    assert sorted(os.listdir(out)) == before
    blocker = tmp_path / 'file'
    blocker.write_text('')
    fails([str(blocker), '--size', '32', '48'], 'is not a directory')


def test_layout_registry_and_metainfo():
    assert sorted(LAYOUTS) == [
        'camvid', 'cityscapes', 'coco', 'coco-categories', 'voc']
    assert SYNTHETIC_METAINFO['classes'] == (
        'disk', 'box', 'triangle', 'sky', 'grass', 'sand')
    assert SYNTHETIC_METAINFO['thing_classes'] == ('disk', 'box', 'triangle')
    assert SYNTHETIC_METAINFO['stuff_classes'] == ('sky', 'grass', 'sand')
    assert len(SYNTHETIC_METAINFO['palette']) == 6
