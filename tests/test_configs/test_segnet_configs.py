"""configs/segnet: the CamVid recipe says what its name says and trains one
step on a tiny generated CamVid copy; the toy config trains and evaluates
on tiny synthetic data."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_DIR = osp.join(ROOT, 'configs', 'segnet')
CAMVID = 'segnet_vgg16-bn_1xb4-40k_camvid-360x480.py'
TOY = 'segnet_vgg16-bn_synthetic.py'
# SegNet-Tutorial, Models/segnet_train.prototxt, class_weighting
TUTORIAL_WEIGHTS = [0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446,
                    1.8418, 0.6823, 6.2478, 7.3614]

pytestmark = pytest.mark.usefixtures('one_thread')


def load(name):
    return Config.fromfile(osp.join(CFG_DIR, name))


def tiny_runner(cfg, work_dir, max_iters):
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = str(work_dir)
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                         val_interval=max_iters)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(key):
            cfg[key].num_workers = 0
            cfg[key].persistent_workers = False
    cfg.randomness = dict(seed=0)
    return Runner.from_cfg(cfg)


def test_camvid_recipe_matches_name_and_paper():
    cfg = load(CAMVID)
    assert cfg.custom_imports == dict(imports=['segext'],
                                      allow_failed_imports=False)
    assert cfg.default_scope == 'mmseg'
    # 1xb4: batch 4 on one device; 40k iterations; 360x480 crops
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.auto_scale_lr.base_batch_size == 4
    # mmengine's IterBasedTrainLoop, with a bit-identical --resume
    assert cfg.train_cfg.type == 'ExactResumeIterBasedTrainLoop'
    assert cfg.train_cfg.max_iters == 40000
    assert tuple(cfg.model.data_preprocessor.size) == (360, 480)
    assert [tuple(t.crop_size) for t in cfg.train_dataloader.dataset.pipeline
            if t.type == 'RandomCrop'] == [(360, 480)]
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == (
        'SGD', 0.001, 0.9, 0.0005)
    [sched] = cfg.param_scheduler
    assert sched.type == 'ConstantLR' and sched.factor == 1.0
    assert cfg.model.backbone.type == 'SegNetVGG'
    assert cfg.model.backbone.depth == 16 and cfg.model.backbone.ceil_mode
    assert cfg.model.backbone.init_cfg == dict(
        type='Pretrained',
        checkpoint='checkpoints/vgg16-bn_segnet-encoder.pth')
    head = cfg.model.decode_head
    assert head.type == 'SegNetHead' and head.num_classes == 11
    assert head.loss_decode.type == 'WeightedCrossEntropyLoss'
    assert head.loss_decode.class_weight == TUTORIAL_WEIGHTS
    ds = cfg.train_dataloader.dataset
    assert ds.type == 'CamVidDataset' and ds.data_root == 'data/CamVid/'
    assert ds.data_prefix == dict(img_path='train', seg_map_path='trainannot')
    assert cfg.test_dataloader.dataset.data_prefix.img_path == 'test'


def test_camvid_config_one_train_step_on_tiny_copy(tmp_path):
    from segext.datasets.synthetic import generate
    root = tmp_path / 'data'
    generate(str(root), layout='camvid', num_train=2, num_val=1,
             size=(33, 47), seed=2)
    cfg = load(CAMVID)
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = str(root / 'CamVid')
    cfg.train_dataloader.batch_size = 2
    crop = (25, 35)  # reduced, odd: ceil-mode pooling on every border
    cfg.train_dataloader.dataset.pipeline[3].crop_size = crop  # RandomCrop
    cfg.model.data_preprocessor.size = crop
    cfg.model.backbone.init_cfg = None  # no ImageNet file in tests
    runner = tiny_runner(cfg, tmp_path / 'work', max_iters=1)
    before = runner.model.decode_head.conv_seg.weight.detach().clone()
    runner.train()
    assert runner.iter == 1
    loss = runner.message_hub.log_scalars['train/decode.loss_ce'].current()
    assert torch.isfinite(torch.tensor(loss))
    assert not torch.equal(before, runner.model.decode_head.conv_seg.weight)
    metrics = runner.val_loop.run()  # the full 33x47 val image
    assert 0 <= metrics['mIoU'] <= 100 and 'aAcc' in metrics


def test_toy_config_trains_and_evaluates(tmp_path):
    from segext.datasets.synthetic import generate
    root = tmp_path / 'synthetic'
    generate(str(root), layout='coco', num_train=2, num_val=2,
             size=(64, 96), seed=5)
    cfg = load(TOY)
    assert cfg.model.backbone.type == 'SegNetVGG'
    assert cfg.model.decode_head.num_classes == 6
    assert cfg.model.backbone.stage_channels == \
        cfg.model.decode_head.stage_channels
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = str(root) + '/'
    # the generated 96x64 size instead of the native 256x192
    for t in cfg.train_dataloader.dataset.pipeline:
        if t.type == 'RandomResize':
            t.scale = (96, 64)
        elif t.type == 'RandomCrop':
            t.crop_size = (64, 96)
    for t in cfg.val_dataloader.dataset.pipeline:
        if t.type == 'Resize':
            t.scale = (96, 64)
    cfg.model.data_preprocessor.size = (64, 96)
    runner = tiny_runner(cfg, tmp_path / 'work', max_iters=2)
    runner.train()
    metrics = runner.val_loop.run()
    assert 0 <= metrics['mIoU'] <= 100


@pytest.mark.parametrize('name', [CAMVID, TOY])
def test_configs_build(name):
    cfg = load(name)
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    n = sum(p.numel() for p in model.parameters())
    if name == CAMVID:
        assert n == 29_441_419  # the paper: 29.5M
    else:
        assert n < 29_441_419 / 10
