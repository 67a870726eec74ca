"""UPSNet configs: the authors' settings, the toy config's equal budget with
the Panoptic FPN baseline, and real train/eval steps through the configs' data
pipelines on synthetic data (the COCO config with the real 133 categories,
the Cityscapes config in the Cityscapes layout)."""
import os.path as osp

import pytest
import torch
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.evaluator import Evaluator
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
COCO = osp.join(REPO, 'configs/upsnet/upsnet_r50_fpn_1x_coco.py')
ALIAS = osp.join(REPO, 'configs/upsnet_coco.py')
CITYSCAPES = osp.join(REPO, 'configs/upsnet/upsnet_r50_fpn_cityscapes.py')
TOY = osp.join(REPO, 'configs/upsnet/upsnet_r18_fpn_synthetic.py')
BASELINE = osp.join(REPO,
                    'configs/panoptic_fpn/panoptic-fpn_r18_fpn_synthetic.py')
TINY = (96, 64)  # (w, h) image scale for the step tests


def _common_checks(cfg):
    assert cfg.custom_imports == dict(
        imports=['segext'], allow_failed_imports=False)
    assert cfg.default_scope == 'mmdet'
    assert cfg.model.type == 'UPSNet'
    assert cfg.model.semantic_head.type == 'UPSNetSemanticHead'
    assert cfg.model.panoptic_fusion_head.type == 'UPSNetPanopticHead'
    assert cfg.model.data_preprocessor.pad_seg
    assert cfg.model.data_preprocessor.seg_pad_value == 255
    assert cfg.model.panoptic_fusion_head.keep_fraction == 0.7


def test_coco_config_is_the_authors_recipe():
    cfg = Config.fromfile(COCO)
    _common_checks(cfg)
    sem, pan = cfg.model.semantic_head, cfg.model.panoptic_fusion_head
    assert (sem.num_things_classes, sem.num_stuff_classes) == (80, 53)
    assert (pan.num_things_classes, pan.num_stuff_classes) == (80, 53)
    assert cfg.model.roi_head.mask_head.num_classes == 80
    assert sem.feat_channels == (256, 128, 128)
    assert sem.conv_cfg == dict(type='DCNv1') and sem.norm_cfg is None
    assert sem.loss_seg.loss_weight == 0.2
    assert sem.loss_roi_seg.loss_weight == 0.04
    assert pan.loss_panoptic.loss_weight == 0.1
    rcnn, panoptic = cfg.model.test_cfg.rcnn, cfg.model.test_cfg.panoptic
    assert rcnn.score_thr == 0.6 and rcnn.max_per_img == 100
    assert rcnn.nms == dict(type='nms', iou_threshold=0.5, class_agnostic=True)
    assert panoptic.stuff_area_limit == 4096 and panoptic.mask_overlap == 0.3
    # schedule: lr 0.02 at batch 16, 1500 warmup iterations from 0.1x
    assert cfg.optim_wrapper.optimizer.lr == 0.02
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end) == ('LinearLR', 0.1,
                                                             1500)
    assert steps.milestones == [8, 11] and cfg.train_cfg.max_epochs == 12
    assert cfg.train_dataloader.dataset.data_root == 'data/coco/'


def test_alias_trains_the_coco_config():
    assert Config.fromfile(ALIAS).to_dict() == Config.fromfile(COCO).to_dict()


def test_cityscapes_config():
    if not osp.exists(
            osp.join(REPO, 'configs/_base_/datasets/cityscapes_panoptic.py')):
        pytest.skip('configs/_base_/datasets/cityscapes_panoptic.py is not '
                    'written yet')
    cfg = Config.fromfile(CITYSCAPES)
    _common_checks(cfg)
    sem, pan = cfg.model.semantic_head, cfg.model.panoptic_fusion_head
    assert sem.num_things_classes + sem.num_stuff_classes == 19
    assert sem.feat_channels == (128, 128)
    assert sem.loss_seg.loss_weight == 1.0 and sem.loss_roi_seg is None
    assert pan.loss_panoptic.loss_weight == 0.5
    assert cfg.model.test_cfg.panoptic.stuff_area_limit == 2048
    assert cfg.train_cfg.max_iters == 12000
    assert cfg.param_scheduler[1].milestones == [9000]


def test_toy_config_matches_the_baseline_budget():
    cfg = Config.fromfile(TOY)
    _common_checks(cfg)
    if not osp.exists(BASELINE):
        pytest.skip('the Panoptic FPN baseline config is not written yet')
    base = Config.fromfile(BASELINE)
    for key in ('backbone', 'neck', 'rpn_head', 'roi_head', 'train_cfg',
                'data_preprocessor'):
        assert cfg.model[key] == base.model[key], key
    for key in ('rpn', 'rcnn'):
        assert cfg.model.test_cfg[key] == base.model.test_cfg[key], key
    for key in ('train_dataloader', 'val_dataloader', 'val_evaluator',
                'train_cfg', 'param_scheduler', 'optim_wrapper'):
        assert cfg[key] == base[key], key


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    from segext.datasets.synthetic import generate
    root = tmp_path_factory.mktemp('upsnet_synthetic')
    paths = {}
    for layout in ('coco', 'coco-categories', 'cityscapes'):
        out = str(root / layout)
        generate(out, layout=layout, num_train=2, num_val=2, size=(64, 96))
        paths[layout] = out + '/'
    return paths


def _dataset(cfg, split, data_root):
    """The config's dataset at ``data_root``, images resized to TINY."""
    ds_cfg = cfg[f'{split}_dataloader'].dataset.copy()
    ds_cfg.data_root = data_root
    for step in ds_cfg.pipeline:
        if step.type == 'Resize':
            step.scale = TINY
        elif step.type == 'RandomResize':
            step.scale = [TINY, TINY]
    return DATASETS.build(ds_cfg)


def _model(cfg):
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg = None  # no network: no ImageNet weights
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def _train_step(cfg, data_root):
    model = _model(cfg)
    dataset = _dataset(cfg, 'train', data_root)
    data = pseudo_collate([dataset[0], dataset[1]])
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    log_vars = model.train_step(data, optim_wrapper)
    for key in ('loss', 'loss_mask', 'loss_seg', 'loss_panoptic'):
        assert torch.isfinite(log_vars[key]), key
    assert ('loss_roi_seg' in log_vars) == model.semantic_head.with_roi_loss
    return model


def test_coco_config_train_step_on_coco_categories(synthetic):
    cfg = Config.fromfile(ALIAS)
    model = _train_step(cfg, synthetic['coco-categories'])
    assert model.semantic_head.conv_logits.out_channels == 133


def test_cityscapes_config_train_step(synthetic):
    if not osp.exists(
            osp.join(REPO, 'configs/_base_/datasets/cityscapes_panoptic.py')):
        pytest.skip('configs/_base_/datasets/cityscapes_panoptic.py is not '
                    'written yet')
    model = _train_step(Config.fromfile(CITYSCAPES), synthetic['cityscapes'])
    assert model.semantic_head.conv_logits.out_channels == 19


def test_toy_config_train_step_and_panoptic_evaluation(synthetic):
    cfg = Config.fromfile(TOY)
    root = synthetic['coco']
    model = _train_step(cfg, root)
    # inference through the real test pipeline, scored by mmdet's
    # CocoPanopticMetric (label == num_classes read as VOID)
    model.eval()
    dataset = _dataset(cfg, 'val', root)
    data = pseudo_collate([dataset[0], dataset[1]])
    with torch.no_grad():
        outputs = model.val_step(data)
    for output, item in zip(outputs, data['data_samples']):
        assert output.pred_panoptic_seg.sem_seg.shape[1:] == item.ori_shape
    evaluator_cfg = [
        dict(ev, ann_file=root + 'annotations/panoptic_val2017.json',
             seg_prefix=root + 'annotations/panoptic_val2017/')
        for ev in cfg.val_evaluator
    ]
    evaluator = Evaluator(evaluator_cfg)
    evaluator.dataset_meta = dataset.metainfo
    evaluator.process(data_samples=outputs, data_batch=data)
    metrics = evaluator.evaluate(len(outputs))
    assert {'coco_panoptic/PQ', 'coco_panoptic/PQ_th',
            'coco_panoptic/PQ_st'} <= set(metrics)
