"""The dilation configs load, say what the paper/authors say, and build.

Full-size VGG-16 models are built on the meta device (shapes only); the toy
configs are built for real and take a training step on a tiny batch."""
import copy
import functools
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VOC = {
    'frontend': 'configs/dilation/dilation-frontend_vgg16_voc12-500x500.py',
    'large': 'configs/dilation/dilation-large-context_vgg16_voc12-500x500.py',
    'basic': 'configs/dilation/dilation-basic-context_vgg16_voc12-500x500.py',
}
CITYSCAPES = ('configs/dilation/'
              'dilation-context_drn-d-22_4xb8-250e_cityscapes-896x896.py')
TOY_VGG = 'configs/dilation/dilation-large-context_vgg16_synthetic.py'
TOY_VGG_FRONT = 'configs/dilation/dilation-frontend_vgg16_synthetic.py'
TOY_DRN = 'configs/drn/drn-d-22-context_synthetic.py'
VGG16_FRONT_END = 134_260_544  # VGG-16 without fc8 (see test_dilated_vgg)


@functools.lru_cache(maxsize=None)
def _load(rel):
    return Config.fromfile(osp.join(ROOT, rel))


def load(rel):
    cfg = copy.deepcopy(_load(rel))
    assert cfg.default_scope == 'mmseg'
    assert cfg.custom_imports == dict(
        imports=['segext'], allow_failed_imports=False)
    return cfg


def build(cfg):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg.model)


def meta_build(cfg):
    with torch.device('meta'):
        return build(cfg)


def test_frontend_voc_follows_the_paper():
    cfg = load(VOC['frontend'])
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == (
        'SGD', 1e-3, 0.9, 5e-4)
    assert cfg.train_dataloader.batch_size == 14
    assert cfg.train_cfg.max_iters == 60000
    crop = [t for t in cfg.train_pipeline if t.type == 'RandomCrop'][0]
    assert tuple(crop.crop_size) == (500, 500)
    # the stock loaders' checked subclasses (they name a file they cannot read)
    assert [t.type for t in cfg.train_pipeline] == [
        'CheckedLoadImageFromFile', 'CheckedLoadAnnotations', 'RandomCrop',
        'RandomFlip', 'PackSegInputs']
    ds = cfg.train_dataloader.dataset
    assert ds.type == 'PascalVOCDataset'
    assert ds.data_root == 'data/VOCdevkit/VOC2012'
    assert cfg.model.backbone.type == 'DilatedVGG'
    assert cfg.model.decode_head.type == 'DRNHead'
    model = meta_build(cfg)
    assert model.decode_head.num_classes == 21
    n = sum(p.numel() for p in model.parameters())
    assert n == VGG16_FRONT_END + 4096 * 21 + 21  # + the 'final' classifier


@pytest.mark.parametrize('name, widths', [
    ('large', (2, 2, 4, 8, 16, 32, 32)),
    ('basic', (1, ) * 7),
])
def test_context_voc(name, widths):
    cfg = load(VOC[name])
    assert cfg.load_from.endswith(
        'dilation-frontend_vgg16_voc12-500x500/iter_60000.pth')
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    model = meta_build(cfg)
    ctx = model.decode_head.context
    assert ctx.in_channels == 21 and ctx.widths == widths
    assert ctx.dilations == (1, 1, 2, 4, 8, 16, 1)
    # the context stage trains the module only
    assert model.backbone.frozen_stages == 5
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys[
        'decode_head.conv_seg'] == dict(lr_mult=0., decay_mult=0.)
    trainable = sum(p.numel() for n, p in model.named_parameters()
                    if p.requires_grad and 'context' in n)
    chans = [21] + [w * 21 for w in widths]
    expected = sum(9 * i * o + o for i, o in zip(chans[:-1], chans[1:]))
    assert trainable == expected + chans[-1] * 21 + 21


def test_drn_context_cityscapes():
    cfg = load(CITYSCAPES)
    base = load('configs/drn/drn-d-22_4xb8-250e_cityscapes-896x896.py')
    assert cfg.train_dataloader == base.train_dataloader
    # stage 2 on the trained DRN-D-22: frozen front-end, lr 1e-3, constant
    assert cfg.load_from == ('work_dirs/drn-d-22_4xb8-250e_cityscapes-'
                             '896x896/epoch_250.pth')
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.param_scheduler == []
    assert cfg.train_cfg.max_epochs == 50
    model = meta_build(cfg)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    head = model.decode_head
    assert type(head).__name__ == 'ContextHead'
    assert head.context.in_channels == 19
    assert head.context.dilations == (1, 1, 2, 4, 8, 16, 32, 64, 1)
    assert head.context.widths == (1, ) * 9
    assert head.context.receptive_field == 259


def _train_step(cfg, size=(64, 96)):
    torch.manual_seed(0)
    model = build(cfg)
    model.init_weights()
    model.train()
    inputs = torch.rand(2, 3, *size)
    samples = []
    for _ in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 6, (1, *size)))
        s.set_metainfo(dict(img_shape=size, pad_shape=size, ori_shape=size))
        samples.append(s)
    losses = model.loss(inputs, samples)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    return model


@pytest.mark.parametrize('rel', [TOY_VGG_FRONT, TOY_VGG, TOY_DRN])
def test_toy_configs_train(rel):
    cfg = load(rel)
    assert cfg.train_dataloader.dataset.data_root == 'data/synthetic/'
    model = _train_step(cfg)
    head = model.decode_head
    assert head.num_classes == 6
    if rel == TOY_VGG_FRONT:
        assert type(head).__name__ == 'DRNHead'
        assert model.backbone.conv1_1.weight.grad is not None
        return
    # stage 2: the front-end is frozen, the context module trains
    assert type(head).__name__ == 'ContextHead'
    assert all(c.weight.grad is not None for c in head.context.convs)
    assert all(p.grad is None for p in model.backbone.parameters())


def test_toy_vgg_context_is_the_second_stage_of_the_vgg_toy():
    cfg, base = load(TOY_VGG), load(TOY_VGG_FRONT)
    for key in ('train_dataloader', 'param_scheduler', 'train_cfg'):
        assert cfg[key] == base[key], key
    assert cfg.load_from == (
        'work_dirs/dilation-frontend_vgg16_synthetic/iter_300.pth')
    assert cfg.model.backbone.frozen_stages == 5
    assert cfg.model.decode_head.context_cfg.arch == 'large'
    assert cfg.optim_wrapper.optimizer.lr == 1e-3


def test_toy_drn_context_is_the_second_stage_of_the_drn_toy():
    cfg, base = load(TOY_DRN), load('configs/drn/drn-d-22_synthetic.py')
    for key in ('train_dataloader', 'param_scheduler', 'train_cfg',
                'randomness'):
        assert cfg[key] == base[key], key
    # the authors' context-stage lr, otherwise the DRN toy's optimizer
    opt = dict(base.optim_wrapper.optimizer, lr=1e-3)
    assert cfg.optim_wrapper.optimizer == opt
    # the trained front-end of drn-d-22_synthetic.py, frozen
    assert cfg.load_from == 'work_dirs/drn-d-22_synthetic/iter_300.pth'
    assert cfg.model.backbone.frozen_stages == 8
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys[
        'decode_head.conv_seg'] == dict(lr_mult=0., decay_mult=0.)
    frozen = dict(cfg.model.backbone)
    frozen.pop('frozen_stages')
    assert frozen == base.model.backbone
    assert cfg.model.decode_head.context_cfg.arch == 'large'
