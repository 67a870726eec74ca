"""UPSNet detector: joint training losses, gradients of the panoptic loss,
batches with empty images and mixed sizes, inference format, determinism and
a short overfit on a fixed batch (tiny R-18 model from the toy config)."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData, PixelData

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
TOY_CONFIG = osp.join(REPO, 'configs/upsnet/upsnet_r18_fpn_synthetic.py')
T, S = 3, 3  # the synthetic dataset: 3 things, 3 stuff
VOID = T + S


def tiny_model_cfg():
    """The toy config's model with every width cut down (a few M params)."""
    model = Config.fromfile(TOY_CONFIG).model
    model.backbone.base_channels = 16
    model.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    model.rpn_head.update(in_channels=32, feat_channels=32)
    model.roi_head.bbox_roi_extractor.out_channels = 32
    model.roi_head.bbox_head.update(in_channels=32, fc_out_channels=64)
    model.roi_head.mask_roi_extractor.out_channels = 32
    model.roi_head.mask_head.update(
        in_channels=32, conv_out_channels=32, num_convs=2)
    model.semantic_head.update(
        in_channels=32,
        feat_channels=(32, 16, 16),
        roi_extractor=dict(out_channels=64))
    model.test_cfg.panoptic.stuff_area_limit = 0
    return model


def build_model(seed=0):
    init_default_scope('mmdet')
    torch.manual_seed(seed)
    model = MODELS.build(tiny_model_cfg())
    model.init_weights()
    return model


def scene(h, w, things=(), crowd=None, seed=0, ori_scale=1.):
    """A packed input: sky above grass, axis-aligned box things
    ``(x1, y1, x2, y2, label)``, an optional crowd box, an ignored column."""
    rng = np.random.RandomState(seed)
    img = rng.randint(0, 60, (3, h, w), dtype=np.uint8)
    sem = np.full((h, w), T, np.uint8)  # sky
    sem[h // 2:] = T + 1  # grass
    img[1, h // 2:] += 120
    sem[:, :2] = 255
    masks = np.zeros((len(things), h, w), np.uint8)
    for i, (x1, y1, x2, y2, label) in enumerate(things):
        masks[i, y1:y2, x1:x2] = 1
        sem[y1:y2, x1:x2] = label
        img[label, y1:y2, x1:x2] = 250
    if crowd is not None:
        x1, y1, x2, y2, label = crowd
        sem[y1:y2, x1:x2] = label
    ori = (int(h * ori_scale), int(w * ori_scale))
    sample = DetDataSample(
        metainfo=dict(
            img_id=seed,
            img_shape=(h, w),
            ori_shape=ori,
            scale_factor=(1 / ori_scale, 1 / ori_scale)))
    sample.gt_instances = InstanceData(
        bboxes=HorizontalBoxes(
            torch.tensor([t[:4] for t in things],
                         dtype=torch.float32).reshape(-1, 4)),
        labels=torch.tensor([t[4] for t in things], dtype=torch.long),
        masks=BitmapMasks(masks, h, w))
    sample.ignored_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.zeros(0, 4)),
        labels=torch.zeros(0, dtype=torch.long))
    sample.gt_sem_seg = PixelData(sem_seg=torch.from_numpy(sem[None].copy()))
    return dict(inputs=torch.from_numpy(img), data_samples=sample)


def batch(*scenes):
    return dict(
        inputs=[s['inputs'] for s in scenes],
        data_samples=[s['data_samples'] for s in scenes])


def mixed_batch():
    """Two sizes; the second image has no thing at all."""
    return batch(
        scene(64, 96, [(10, 8, 40, 40, 0), (50, 30, 90, 60, 2)],
              crowd=(60, 2, 70, 12, 1)),
        scene(48, 80, seed=1))


def losses_of(model, data):
    data = model.data_preprocessor(data, True)
    return model(**data, mode='loss')


def test_train_step_mixed_sizes_and_an_empty_image():
    model = build_model()
    model.train()
    losses = losses_of(model, mixed_batch())
    for key in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox',
                'loss_mask', 'loss_seg', 'loss_roi_seg', 'loss_panoptic'):
        assert key in losses, key
    total, log_vars = model.parse_losses(losses)
    assert torch.isfinite(total)
    assert all(torch.isfinite(v) for v in log_vars.values())
    total.backward()
    for name in ('backbone.conv1.weight', 'semantic_head.conv_logits.weight',
                 'semantic_head.subnet.0.conv.conv_offset.weight',
                 'roi_head.mask_head.conv_logits.weight',
                 'roi_head.bbox_head.fc_cls.weight',
                 'rpn_head.rpn_cls.weight'):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_panoptic_loss_reaches_mask_semantic_heads_and_backbone():
    model = build_model()
    model.train()
    losses = losses_of(model, mixed_batch())
    losses['loss_panoptic'].backward()
    for name in ('roi_head.mask_head.conv_logits.weight',
                 'semantic_head.conv_logits.weight', 'neck.fpn_convs.0.conv'
                 '.weight', 'backbone.conv1.weight'):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    # the box head plays no part in the panoptic loss
    assert model.roi_head.bbox_head.fc_cls.weight.grad is None


def test_batch_without_any_thing_trains():
    model = build_model()
    model.train()
    losses = losses_of(model, batch(scene(64, 64), scene(64, 64, seed=1)))
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    assert losses['loss_roi_seg'] == 0
    assert losses['loss_panoptic'] > 0  # stuff and unknown targets remain
    total.backward()
    assert model.semantic_head.conv_logits.weight.grad.abs().sum() > 0


def test_deterministic_given_a_seed():
    values = []
    for _ in range(2):
        model = build_model(seed=1)
        model.train()
        torch.manual_seed(7)
        losses = losses_of(model, mixed_batch())
        values.append(
            {k: v.item() for k, v in model.parse_losses(losses)[1].items()})
    assert values[0] == values[1]


@pytest.mark.parametrize('rescale', [True, False])
def test_predict_panoptic_format(rescale):
    model = build_model()
    model.test_cfg.rcnn.score_thr = 0.0  # untrained: let detections through
    model.eval()
    data = batch(
        scene(64, 96, [(10, 8, 40, 40, 0)], ori_scale=1.5),
        scene(48, 80, seed=1))
    data = model.data_preprocessor(data, False)
    with torch.no_grad():
        results = model.predict(
            data['inputs'], data['data_samples'], rescale=rescale)
    shapes = [(96, 144), (48, 80)] if rescale else [(64, 96), (48, 80)]
    for result, shape in zip(results, shapes):
        pan = result.pred_panoptic_seg.sem_seg
        assert pan.shape == (1, ) + shape and pan.dtype == torch.int32
        labels = pan % INSTANCE_OFFSET
        ids = pan // INSTANCE_OFFSET
        assert torch.all(labels <= VOID)
        # things carry an instance id, stuff and VOID do not
        assert torch.all((ids > 0) == (labels < T))


def test_loss_decreases_on_a_fixed_batch():
    model = build_model()
    model.train()
    optim = build_optim_wrapper(
        model,
        dict(
            type='OptimWrapper',
            optimizer=dict(type='SGD', lr=0.01, momentum=0.9),
            clip_grad=dict(max_norm=10)))
    data = batch(
        scene(64, 64, [(8, 8, 30, 30, 0), (36, 36, 60, 60, 1)]),
        scene(64, 64, [(20, 10, 50, 40, 2)], seed=1))
    torch.manual_seed(0)
    history = []
    for _ in range(30):
        log_vars = model.train_step(data, optim)
        history.append([
            log_vars[k].item() for k in ('loss', 'loss_panoptic', 'loss_seg')
        ])
    first, last = np.mean(history[:3], 0), np.mean(history[-3:], 0)
    assert last[0] < 0.7 * first[0], history
    assert last[1] < first[1] and last[2] < first[2], history


def test_tensor_mode_runs():
    model = build_model()
    model.eval()
    data = model.data_preprocessor(batch(scene(64, 64)), False)
    with torch.no_grad():
        outs = model(data['inputs'], data['data_samples'], mode='tensor')
    assert outs[-1].shape == (1, T + S, 16, 16)  # the semantic logits X


def test_mismatched_class_counts_name_the_head():
    init_default_scope('mmdet')
    cfg = tiny_model_cfg()
    cfg.roi_head.mask_head.num_classes = 80
    with pytest.raises(ValueError, match='mask_head.num_classes'):
        MODELS.build(cfg)
    cfg = tiny_model_cfg()
    cfg.semantic_head.num_stuff_classes = 53
    with pytest.raises(ValueError, match='semantic_head'):
        MODELS.build(cfg)
