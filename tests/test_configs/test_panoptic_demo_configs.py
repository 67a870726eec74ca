"""The main job's UPSNet config and its Panoptic FPN partner for
``make compare``: equal by construction except for the semantic and panoptic
heads, the paper's UPSNet recipe at the toy's size, the data the main job
writes, and a real train step + panoptic inference of each model."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
UPSNET = 'configs/upsnet/upsnet_r18-half_fpn_360it_synthetic-128x96.py'
PANOPTIC_FPN = ('configs/panoptic_fpn/'
                'panoptic-fpn_r18-half_fpn_360it_synthetic-128x96.py')


def _tool(name, path):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def cfgs():
    return {n: Config.fromfile(osp.join(REPO, c))
            for n, c in (('upsnet', UPSNET), ('panoptic_fpn', PANOPTIC_FPN))}


def test_the_pair_differs_only_in_the_heads(cfgs):
    up, pf = cfgs['upsnet'], cfgs['panoptic_fpn']
    assert (up.model.type, pf.model.type) == ('UPSNet', 'PanopticFPN')
    assert pf.model.semantic_head.type == 'PanopticFPNHead'
    assert pf.model.panoptic_fusion_head.type == 'HeuristicFusionHead'
    for key in ('data_preprocessor', 'backbone', 'neck', 'rpn_head',
                'roi_head', 'train_cfg'):
        assert up.model[key] == pf.model[key], key
    for key in ('rpn', 'rcnn'):
        assert up.model.test_cfg[key] == pf.model.test_cfg[key], key
    assert (up.model.test_cfg.panoptic.stuff_area_limit ==
            pf.model.test_cfg.panoptic.stuff_area_limit)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                'val_evaluator', 'test_evaluator', 'train_cfg',
                'param_scheduler', 'optim_wrapper', 'randomness'):
        assert up[key] == pf[key], key


def test_upsnet_keeps_the_papers_recipe_at_the_toy_size(cfgs):
    up = cfgs['upsnet']
    sem, pan = up.model.semantic_head, up.model.panoptic_fusion_head
    assert sem.conv_cfg == dict(type='DCNv1') and len(sem.feat_channels) == 3
    assert sem.roi_extractor.out_channels == 4 * sem.feat_channels[-1]
    assert (sem.loss_seg.loss_weight, sem.loss_roi_seg.loss_weight,
            pan.loss_panoptic.loss_weight) == (0.2, 0.04, 0.1)
    assert pan.keep_fraction == 0.7
    # the toy's 256 px at 256x192, scaled with the image area
    assert up.model.test_cfg.panoptic.stuff_area_limit == 256 * (
        128 * 96) // (256 * 192)
    # half-width R-18: the FPN reads its stage widths
    assert up.model.neck.in_channels == [
        up.model.backbone.base_channels * 2**i for i in range(4)]
    warmup, step = up.param_scheduler
    assert step.type == 'MultiStepLR' and step.milestones[-1] < \
        up.train_cfg.max_iters


def test_main_job_and_compare_write_the_data_the_configs_read(cfgs):
    main_job = _tool('main_job', 'tools/main_job.py')
    compare = _tool('compare_panoptic',
                    'tools/analysis_tools/compare_panoptic.py')
    assert main_job.CONFIG == compare.MODELS['upsnet'] == UPSNET
    assert compare.MODELS['panoptic_fpn'] == PANOPTIC_FPN
    up = cfgs['upsnet']
    root = up.train_dataloader.dataset.data_root
    assert root.rstrip('/') == main_job.DATA_ROOT
    assert compare.parse_args([]).data_root == main_job.DATA_ROOT
    resize = [t for t in up.train_dataloader.dataset.pipeline
              if t.type == 'Resize'][0]
    h, w = main_job.DATA['size']
    assert tuple(resize.scale) == (w, h)  # native size: Resize is a no-op
    assert up.val_evaluator[0].ann_file.startswith(root)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    from segext.datasets.synthetic import generate
    root = str(tmp_path_factory.mktemp('demo_synthetic')) + '/'
    generate(root, layout='coco', num_train=2, num_val=1, size=(96, 128))
    return root


@pytest.mark.parametrize('name', ['upsnet', 'panoptic_fpn'])
def test_train_step_and_inference(cfgs, data_root, name):
    cfg = cfgs[name]
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    datasets = {}
    for split in ('train', 'val'):
        ds_cfg = cfg[f'{split}_dataloader'].dataset.copy()
        ds_cfg.data_root = data_root
        datasets[split] = DATASETS.build(ds_cfg)
    data = pseudo_collate([datasets['train'][0], datasets['train'][1]])
    assert data['inputs'][0].shape[1:] == (96, 128)
    model.train()
    log_vars = model.train_step(
        data, build_optim_wrapper(model, cfg.optim_wrapper))
    assert torch.isfinite(log_vars['loss'])
    assert 'loss_seg' in log_vars and 'loss_mask' in log_vars
    assert ('loss_panoptic' in log_vars) == (name == 'upsnet')
    model.eval()
    with torch.no_grad():
        out, = model.val_step(pseudo_collate([datasets['val'][0]]))
    assert out.pred_panoptic_seg.sem_seg.shape == (1, 96, 128)
