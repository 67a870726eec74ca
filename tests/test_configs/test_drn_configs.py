"""configs/drn: the Cityscapes recipes say what their names say, build, and
train one step on a tiny synthetic Cityscapes copy; the toy and the mmdet
Panoptic FPN config train one step on tiny synthetic data."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_DIR = osp.join(ROOT, 'configs', 'drn')

# name -> (arch, depth, gpus x batch, epochs, crop, paper Cityscapes mIoU)
CITYSCAPES = {
    'drn-c-26_4xb8-250e_cityscapes-896x896.py': ('C', 26, 32, 250, 896),
    'drn-c-42_4xb8-250e_cityscapes-896x896.py': ('C', 42, 32, 250, 896),
    'drn-d-22_4xb8-250e_cityscapes-896x896.py': ('D', 22, 32, 250, 896),
    'drn-d-38_4xb8-250e_cityscapes-896x896.py': ('D', 38, 32, 250, 896),
    'drn-d-105_8xb2-500e_cityscapes-840x840.py': ('D', 105, 16, 500, 840),
}
# backbone (fc excluded) + 1x1 classifier 512 -> 19 with bias
BACKBONE_PARAMS = {('C', 26): 21_126_584, ('C', 42): 31_234_744,
                   ('D', 22): 16_393_752, ('D', 38): 26_501_912,
                   ('D', 105): 54_801_304}

pytestmark = pytest.mark.usefixtures('one_thread')


def load(name):
    return Config.fromfile(osp.join(CFG_DIR, name))


@pytest.mark.parametrize('name', sorted(CITYSCAPES))
def test_cityscapes_recipe_matches_name_and_authors(name):
    arch, depth, batch, epochs, crop = CITYSCAPES[name]
    cfg = load(name)
    assert cfg.custom_imports == dict(imports=['segext'],
                                      allow_failed_imports=False)
    assert cfg.default_scope == 'mmseg'
    gpus = int(name.split('_')[1].split('xb')[0])
    assert gpus * cfg.train_dataloader.batch_size == batch
    assert cfg.auto_scale_lr.base_batch_size == batch
    assert cfg.model.backbone.type == 'DRN'
    assert (cfg.model.backbone.arch, cfg.model.backbone.depth) == (arch,
                                                                   depth)
    assert cfg.model.backbone.init_cfg.checkpoint == (
        f'checkpoints/drn-{arch.lower()}-{depth}_imagenet.pth')
    assert cfg.model.decode_head.type == 'DRNHead'
    assert cfg.model.decode_head.num_classes == 19
    assert cfg.train_dataloader.dataset.type == 'CityscapesDataset'
    assert tuple(cfg.model.data_preprocessor.size) == (crop, crop)
    crops = [t for t in cfg.train_dataloader.dataset.pipeline
             if t.type == 'RandomCrop']
    assert [tuple(t.crop_size) for t in crops] == [(crop, crop)]
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == (
        'SGD', 0.01, 0.9, 1e-4)
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop'
    assert cfg.train_cfg.max_epochs == epochs
    [sched] = cfg.param_scheduler
    assert sched.by_epoch and sched.end == epochs
    types = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    if depth == 105:
        assert sched.type == 'PolyLR' and sched.power == 0.9
        assert cfg.model.backbone.norm_cfg.type == 'SyncBN'
        assert 'RandomRotate' in types and 'RandomResize' in types
    else:
        assert sched.type == 'MultiStepLR' and sched.milestones == [100, 200]
        assert 'RandomResize' not in types  # the authors: crops + flips only
    # the model builds (meta: shapes only) with the paper's parameter count
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    n = sum(p.numel() for p in model.parameters())
    assert n == BACKBONE_PARAMS[(arch, depth)] - 513_000 + 512 * 19 + 19


def tiny_runner(cfg, work_dir, max_iters=None):
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = str(work_dir)
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    if max_iters is not None:
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                             val_interval=max_iters)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(key):
            cfg[key].num_workers = 0
            cfg[key].persistent_workers = False
    cfg.randomness = dict(seed=0)
    return Runner.from_cfg(cfg)


def test_cityscapes_d22_one_train_step_and_d105_pipeline(tmp_path):
    from segext.datasets.synthetic import generate
    root = tmp_path / 'cityscapes'
    generate(str(root), layout='cityscapes', num_train=2, num_val=1,
             size=(48, 96), seed=1)
    cfg = load('drn-d-22_4xb8-250e_cityscapes-896x896.py')
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = str(root)
    cfg.train_dataloader.batch_size = 2
    crop = (32, 32)
    cfg.train_dataloader.dataset.pipeline[2].crop_size = crop
    cfg.model.data_preprocessor.size = crop
    cfg.model.backbone.init_cfg = None  # no ImageNet file in tests
    cfg.train_cfg.max_epochs = 1
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    runner = tiny_runner(cfg, tmp_path / 'work')
    runner.train()
    assert runner.iter == 1  # 2 images, batch 2, drop_last
    scalars = runner.message_hub.log_scalars
    assert torch.isfinite(torch.tensor(
        scalars['train/decode.loss_ce'].current()))

    # D-105: its rotate/scale/crop pipeline runs on the tiny copy
    cfg105 = load('drn-d-105_8xb2-500e_cityscapes-840x840.py')
    ds_cfg = cfg105.train_dataloader.dataset
    ds_cfg.data_root = str(root)
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    sample = DATASETS.build(ds_cfg)[0]
    assert sample['inputs'].shape[0] == 3
    assert sample['data_samples'].gt_sem_seg.data.shape[-2:] == \
        sample['inputs'].shape[-2:]


@pytest.fixture(scope='module')
def synthetic_coco(tmp_path_factory):
    from segext.datasets.synthetic import generate
    root = tmp_path_factory.mktemp('drn_synthetic')
    generate(str(root), layout='coco', num_train=2, num_val=2,
             size=(64, 96), seed=5)
    return str(root)


def test_toy_config_trains_and_evaluates(synthetic_coco, tmp_path):
    cfg = load('drn-d-22_synthetic.py')
    assert cfg.model.backbone.type == 'DRN'
    assert (cfg.model.backbone.arch, cfg.model.backbone.depth) == ('D', 22)
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = synthetic_coco + '/'
    # the tiny images at their own size (the toy upscales to 256x192)
    cfg.model.data_preprocessor.size = (64, 96)
    for t in (*cfg.train_dataloader.dataset.pipeline,
              *cfg.val_dataloader.dataset.pipeline):
        if t.type in ('RandomResize', 'Resize'):
            t.scale = (96, 64)
        elif t.type == 'RandomCrop':
            t.crop_size = (64, 96)
    runner = tiny_runner(cfg, tmp_path, max_iters=2)
    runner.train()
    metrics = runner.val_loop.run()
    assert 0 <= metrics['mIoU'] <= 100


def test_panoptic_fpn_drn_config_one_train_step(synthetic_coco, tmp_path):
    cfg = load('panoptic-fpn_drn-d-22_fpn_synthetic.py')
    assert cfg.default_scope == 'mmdet'
    assert cfg.model.backbone.type == 'DRN'
    assert cfg.model.neck.in_channels == [64, 512]
    cfg.train_dataloader.dataset.data_root = synthetic_coco + '/'
    for t in cfg.train_dataloader.dataset.pipeline:
        if t.type == 'Resize':
            t.scale = (96, 64)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    runner = tiny_runner(cfg, tmp_path, max_iters=1)
    # FPN sees strides 4, 8 from DRN and adds 16, 32, 64 by 3 extra convs
    neck = runner.model.neck
    assert len(neck.lateral_convs) == 2 and len(neck.fpn_convs) == 5
    assert all(c.conv.stride == (2, 2) for c in list(neck.fpn_convs)[2:])
    with torch.no_grad():
        feats = runner.model.extract_feat(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in feats] == [
        (16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    runner.train()
    assert runner.iter == 1
    losses = {k: v.current() for k, v in
              runner.message_hub.log_scalars.items() if 'loss' in k}
    assert losses and all(torch.isfinite(torch.tensor(v))
                          for v in losses.values())
