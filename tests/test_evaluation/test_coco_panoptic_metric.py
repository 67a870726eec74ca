"""NonMutatingCocoPanopticMetric: VOID stays VOID in what the visualiser, the
``--out`` dump and ``inference_detector`` see; PQ inputs are the stock ones.

The end-to-end test trains the Panoptic FPN toy for a few iterations with
``tools/train.py``, runs ``tools/test.py``'s own config preparation with a
hook that records what the visualisation hook is handed, and compares the
segment ids of that, of the ``--out`` pickle and of ``inference_detector``.
"""
import glob
import importlib.util
import os
import os.path as osp
import pickle
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmdet.evaluation import CocoPanopticMetric
from segext.evaluation import (CityscapesPanopticMetric,
                               NonMutatingCocoPanopticMetric)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PANOPTIC_FPN = osp.join(ROOT, 'configs', 'panoptic_fpn',
                        'panoptic-fpn_r18_fpn_synthetic.py')
CLASSES = ('disk', 'box', 'triangle', 'sky', 'grass', 'sand')
VOID = len(CLASSES)  # mmdet's panoptic VOID label = num_classes


def _metric(cls, tmp_path):
    metric = cls(ann_file=None, seg_prefix=str(tmp_path),
                 outfile_prefix=str(tmp_path / cls.__name__))
    metric.dataset_meta = dict(classes=CLASSES, thing_classes=CLASSES[:3],
                               stuff_classes=CLASSES[3:])
    return metric


def _prediction():
    """(1, 4, 6) map: sky, a disk instance, VOID."""
    pan = torch.full((1, 4, 6), 3, dtype=torch.int32)
    pan[0, 1:3, 1:3] = 0 + 1000  # disk, instance 1
    pan[0, :, 5] = VOID
    return dict(pred_panoptic_seg=dict(sem_seg=pan))


def _parse(metric, pred):
    return metric._parse_predictions(pred=pred, img_id=0, segm_file='x.png')


def test_stock_metric_still_relabels_cpu_void_in_place(tmp_path):
    """The upstream bug this class works around.  When this test fails,
    mmdet no longer edits the prediction: NonMutatingCocoPanopticMetric can
    go (configs back to CocoPanopticMetric)."""
    pred = _prediction()
    _parse(_metric(CocoPanopticMetric, tmp_path), pred)
    ids = torch.unique(pred['pred_panoptic_seg']['sem_seg']).tolist()
    assert VOID not in ids and 0 in ids  # VOID became "disk"


@pytest.mark.parametrize('cls', [NonMutatingCocoPanopticMetric,
                                 CityscapesPanopticMetric])
def test_prediction_untouched(cls, tmp_path):
    assert issubclass(cls, NonMutatingCocoPanopticMetric)
    pred = _prediction()
    before = pred['pred_panoptic_seg']['sem_seg'].clone()
    _parse(_metric(NonMutatingCocoPanopticMetric, tmp_path), pred)
    assert torch.equal(pred['pred_panoptic_seg']['sem_seg'], before)


def test_same_pq_inputs_as_stock(tmp_path):
    """Same segments_info and the same PNG (VOID = 0 in it) as the stock
    metric writes for panopticapi: PQ cannot change."""
    stock = _metric(CocoPanopticMetric, tmp_path)
    ours = _metric(NonMutatingCocoPanopticMetric, tmp_path)
    rec_stock, rec_ours = _parse(stock, _prediction()), _parse(
        ours, _prediction())
    assert rec_ours == rec_stock
    png_stock = mmcv.imread(osp.join(stock.seg_out_dir, 'x.png'))
    png_ours = mmcv.imread(osp.join(ours.seg_out_dir, 'x.png'))
    np.testing.assert_array_equal(png_ours, png_stock)
    assert (png_ours[:, 5] == 0).all()  # VOID is panopticapi's 0 there


def _evaluator_types(path):
    cfg = Config.fromfile(path)
    types = []
    for key in ('val_evaluator', 'test_evaluator'):
        ev = cfg[key]
        types += [e['type'] for e in (ev if isinstance(ev, list) else [ev])]
    return types


PANOPTIC_CONFIGS = [
    'configs/panoptic_fpn/panoptic-fpn_r18_fpn_synthetic.py',
    'configs/upsnet/upsnet_r18_fpn_synthetic.py',
    'configs/upsnet/upsnet_r50_fpn_1x_coco.py',
    'configs/upsnet_coco.py',
    'configs/upsnet/upsnet_r50_fpn_cityscapes.py',
    'configs/drn/panoptic-fpn_drn-d-22_fpn_synthetic.py',
]


@pytest.mark.parametrize('path', PANOPTIC_CONFIGS)
def test_segext_panoptic_configs_select_it(path):
    for name in _evaluator_types(osp.join(ROOT, path)):
        assert name in ('NonMutatingCocoPanopticMetric',
                        'CityscapesPanopticMetric'), (path, name)


def test_stock_coco_config_opts_in_with_one_line(tmp_path):
    stock = osp.join(ROOT, 'configs', 'panoptic_fpn',
                     'panoptic-fpn_r50_fpn_1x_coco.py')
    assert set(_evaluator_types(stock)) == {'CocoPanopticMetric'}
    user = tmp_path / 'mine.py'
    user.write_text(  # the line docs/inference.md gives
        f'_base_ = {stock!r}\n'
        "val_evaluator = test_evaluator = dict("
        "type='NonMutatingCocoPanopticMetric')\n")
    assert set(_evaluator_types(str(user))) == {
        'NonMutatingCocoPanopticMetric'}
    cfg = Config.fromfile(str(user))
    assert cfg.test_evaluator.ann_file.endswith('panoptic_val2017.json')


# ----------------------------------------------------------- end to end
@pytest.fixture(scope='module')
def data_root(tiny_synthetic_coco):
    return tiny_synthetic_coco


# large enough that the smallest stuff segment of a 64x96 scene is dropped
# to VOID (3 stuff classes share 6144 px): every prediction has VOID
STUFF_AREA_LIMIT = 2100


def _opts(data_root, iters):
    ann = f'{data_root}/annotations/panoptic_val2017.json'
    seg = f'{data_root}/annotations/panoptic_val2017/'
    opts = [f'{s}_dataloader.dataset.data_root={data_root}/'
            for s in ('train', 'val', 'test')]
    for split in ('val', 'test'):
        opts += [f'{split}_evaluator.0.ann_file={ann}',
                 f'{split}_evaluator.0.seg_prefix={seg}']
    return opts + [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters}',
        f'model.test_cfg.panoptic.stuff_area_limit={STUFF_AREA_LIMIT}']


@pytest.fixture(scope='module')
def trained(tmp_path_factory, data_root):
    """(work dir, checkpoint) of a 3-iteration Panoptic FPN toy."""
    work = str(tmp_path_factory.mktemp('pan_train'))
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', PANOPTIC_FPN, '--work-dir', work,
         '--cfg-options'] + _opts(data_root, 3),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, osp.join(work, 'iter_3.pth')


def _load_test_tool():
    spec = importlib.util.spec_from_file_location(
        'segext_tools_test', osp.join(ROOT, 'tools', 'test.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checkpoint_carries_dataset_meta(trained):
    from mmengine.runner.checkpoint import _load_checkpoint
    meta = _load_checkpoint(trained[1], map_location='cpu')['meta'][
        'dataset_meta']
    assert tuple(meta['classes']) == CLASSES
    assert tuple(meta['thing_classes']) == CLASSES[:3]
    assert tuple(meta['stuff_classes']) == CLASSES[3:]
    assert len(meta['palette']) == len(CLASSES)


def test_overlay_dump_and_inference_agree(tmp_path, data_root, trained,
                                          one_thread):
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import HOOKS
    from mmengine.hooks import Hook

    work, ckpt = trained
    seen = {}  # img_path -> segment ids the visualisation hook is handed

    @HOOKS.register_module(name='_RecordPanopticIds', force=True)
    class _RecordPanopticIds(Hook):
        priority = 'LOWEST'  # after the visualisation hook (NORMAL)

        def after_test_iter(self, runner, batch_idx, data_batch, outputs):
            for sample in outputs:
                seen[sample.img_path] = torch.unique(
                    sample.pred_panoptic_seg.sem_seg).tolist()

    tool = _load_test_tool()
    out = str(tmp_path / 'results.pkl')
    args = tool.parse_args([
        PANOPTIC_FPN, ckpt, '--work-dir', str(tmp_path), '--show-dir', 'vis',
        '--out', out, '--cfg-options'] + _opts(data_root, 3))
    cfg, _ = tool.prepare_cfg(args)
    cfg.custom_hooks = [dict(type='_RecordPanopticIds')]
    # mmdet's runtime names its visualiser 'visualizer', and mmengine hands
    # back an existing instance of that name (one an earlier in-process test
    # built, maybe of another class): this runner gets its own
    cfg.visualizer.name = f'overlay-test-{tmp_path.name}'
    runner = tool.build_runner(cfg)
    from mmdet.evaluation import DumpDetResults
    runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))
    runner.test()

    with open(out, 'rb') as f:
        records = pickle.load(f)
    dumped = {r['img_path']: np.unique(r['pred_panoptic_seg']['sem_seg'])
              .tolist() for r in records}
    model = init_detector(
        Config.fromfile(osp.join(work, osp.basename(PANOPTIC_FPN))), ckpt,
        device='cpu', cfg_options={
            'model.test_cfg.panoptic.stuff_area_limit': STUFF_AREA_LIMIT})
    inferred = {
        path: torch.unique(inference_detector(
            model, path).pred_panoptic_seg.sem_seg).tolist()
        for path in dumped}

    assert len(dumped) == 2 and set(seen) == set(dumped)
    for path, ids in inferred.items():
        assert VOID in ids, f'{path}: no VOID predicted, the test is moot'
        assert seen[path] == ids, path  # what --show-dir draws
        assert dumped[path] == ids, path  # what --out holds
    overlays = glob.glob(osp.join(str(tmp_path), '*', 'vis', '*.png'))
    assert len(overlays) == 2
