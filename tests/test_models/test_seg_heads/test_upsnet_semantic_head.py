"""UPSNetSemanticHead: shapes, weight sharing, zero-initialised offsets,
losses at full resolution, the RoI loss, and config errors."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes, bbox2roi
from mmengine.structures import InstanceData, PixelData

from segext.models.layers import DeformConv2dWithOffset
from segext.models.utils.labels import (crop_and_resize_labels,
                                        stack_gt_sem_seg)

T, S = 3, 2
C = 16  # FPN width of the tiny head


def build_head(**kwargs):
    cfg = dict(
        type='UPSNetSemanticHead',
        num_things_classes=T,
        num_stuff_classes=S,
        in_channels=C,
        feat_channels=(16, 8, 8),
        roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=28, sampling_ratio=0),
            out_channels=32,
            featmap_strides=[4]))
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def fpn_feats(batch=2, h=64, w=96):
    """P2..P6 of an (h, w) input."""
    torch.manual_seed(0)
    return tuple(
        torch.randn(batch, C, h // 2**(i + 2), w // 2**(i + 2),
                    requires_grad=True) for i in range(5))


def data_samples(h=64, w=96, boxes=((8., 8., 40., 40.), ), batch=2):
    samples = []
    for b in range(batch):
        sem = torch.full((1, h, w), T + b % S, dtype=torch.uint8)
        sem[:, 8:40, 8:40] = 1
        sem[:, :, :3] = 255
        sample = DetDataSample(metainfo=dict(batch_input_shape=(h, w)))
        sample.gt_sem_seg = PixelData(sem_seg=sem)
        bxs = torch.tensor(boxes if b == 0 else [], dtype=torch.float32)
        sample.gt_instances = InstanceData(
            bboxes=HorizontalBoxes(bxs.reshape(-1, 4)),
            labels=torch.ones(len(bxs), dtype=torch.long))
        samples.append(sample)
    return samples


def test_forward_shapes():
    head = build_head()
    out = head(fpn_feats())
    assert out['seg_preds'].shape == (2, T + S, 16, 24)  # X at 1/4 scale
    assert [tuple(f.shape) for f in out['level_feats']] == [
        (2, 8, 16, 24), (2, 8, 8, 12), (2, 8, 4, 6), (2, 8, 2, 3)]
    concat = head.concat_feats(out['level_feats'])
    assert concat.shape == (2, 4 * 8, 16, 24)  # 4 levels concat
    torch.testing.assert_close(concat[:, 8:16], F.interpolate(
        out['level_feats'][1], size=(16, 24), mode='bilinear',
        align_corners=False))


@pytest.mark.parametrize('conv_cfg', [dict(type='DCNv1'), None])
def test_classifier_per_level_is_the_classifier_of_the_concatenation(
        conv_cfg):
    """X from the 1x1 classifier applied per level before upsampling equals
    the classifier on the concatenated upsampled feature (Sec. 3.1), values
    and gradients, for channels-last (CPU DCN) and standard-layout levels;
    odd sizes, so P3-P5 are not exactly half of P2."""
    head = build_head(conv_cfg=conv_cfg).double()
    with torch.no_grad():  # a bias that matters (it starts at zero)
        head.conv_logits.bias.normal_()
    feats = fpn_feats(h=52, w=76)
    outs = head([f.double() for f in feats])
    levels = outs['level_feats']
    assert all(
        f.is_contiguous(memory_format=torch.channels_last) == (
            conv_cfg is not None) for f in levels)
    ref = head.conv_logits(head.concat_feats(levels))
    torch.testing.assert_close(outs['seg_preds'], ref, rtol=1e-12,
                               atol=1e-12)
    g = torch.randn_like(ref)
    wrt = levels + list(head.conv_logits.parameters())
    got = torch.autograd.grad(outs['seg_preds'], wrt, g, retain_graph=True)
    want = torch.autograd.grad(ref, wrt, g)
    for a, r in zip(got, want):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)


def test_classifier_flops_are_counted_per_image():
    """mmengine's FLOP counter sees the per-level classifier with its batch:
    B * (T+S) * 8 multiply-adds per pixel of each level."""
    from mmengine.analysis import FlopAnalyzer
    head = build_head(conv_cfg=None).eval()
    feats = tuple(f.detach() for f in fpn_feats(batch=3))
    flops = FlopAnalyzer(head, (feats, )).unsupported_ops_warnings(
        False).uncalled_modules_warnings(False)
    pixels = sum(f.shape[-2] * f.shape[-1] for f in feats[:4])
    assert flops.by_operator()['matmul'] == 3 * (T + S) * 8 * pixels


def test_one_shared_deformable_subnet():
    head = build_head()
    dcns = [m for m in head.modules() if isinstance(m, DeformConv2dWithOffset)]
    assert len(dcns) == 3  # 3 layers, shared by P2..P5 (not 4 x 3)
    assert [m.out_channels for m in dcns] == [16, 8, 8]
    assert all(m.bias is not None for m in dcns)
    relus = [m for m in head.subnet.modules() if isinstance(m, torch.nn.ReLU)]
    assert len(relus) == 3
    cityscapes = build_head(feat_channels=(8, 8), loss_roi_seg=None)
    assert len([
        m for m in cityscapes.modules()
        if isinstance(m, DeformConv2dWithOffset)
    ]) == 2


def test_cpu_subnet_runs_channels_last_with_the_same_result():
    """On CPU the shared sub-network runs in channels-last memory (no layout
    copies between the deformable layers) and hands its output on in it;
    values and gradients equal running it on NCHW tensors."""
    head = build_head().double()
    for m in head.modules():  # non-zero offsets, so sampling is exercised
        if isinstance(m, DeformConv2dWithOffset):
            torch.nn.init.normal_(m.conv_offset.weight, std=0.3)
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, C, 13, 17, generator=g, dtype=torch.float64)
    grad = torch.randn(2, 8, 13, 17, generator=g, dtype=torch.float64)
    results = []
    for run, channels_last in ((head._run_subnet, True),
                               (head.subnet, False)):
        x = feat.clone().requires_grad_()
        out = run(x)
        assert out.is_contiguous(memory_format=torch.channels_last) \
            if channels_last else out.is_contiguous()
        params = list(head.subnet.parameters())
        grads = torch.autograd.grad(out, [x] + params, grad)
        results.append((out, ) + grads)
    for ours, ref in zip(*results):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_cpu_head_hands_on_standard_layout_logits(monkeypatch):
    """The level features stay channels-last on CPU (the classifier reads
    them so); the logits X go on in the standard layout (the panoptic head
    and inference work per class map); values as an all-NCHW head's."""
    head = build_head()
    outs = head(fpn_feats())
    assert all(
        f.is_contiguous(memory_format=torch.channels_last)
        for f in outs['level_feats'])
    assert outs['seg_preds'].is_contiguous()
    # the same head with its sub-network in the standard layout
    monkeypatch.setattr(head, '_run_subnet', head.subnet)
    ref = head(fpn_feats())
    torch.testing.assert_close(outs['seg_preds'], ref['seg_preds'])


def test_plain_conv_subnet_keeps_the_standard_layout():
    """conv_cfg=None (plain convs): no channels-last on CPU (oneDNN's
    channels-last weight gradient is slow)."""
    head = build_head(conv_cfg=None)
    outs = head(fpn_feats())
    assert all(f.is_contiguous() for f in outs['level_feats'])
    assert outs['seg_preds'].is_contiguous()


def test_offsets_start_at_zero_so_dcn_starts_as_a_conv():
    head = build_head()
    for m in head.modules():
        if isinstance(m, DeformConv2dWithOffset):
            assert torch.all(m.conv_offset.weight == 0)
            assert torch.all(m.conv_offset.bias == 0)
    dcn = head.subnet[0].conv
    x = torch.randn(1, C, 12, 10)
    torch.testing.assert_close(
        dcn(x), F.conv2d(x, dcn.weight, dcn.bias, padding=1),
        atol=1e-4, rtol=1e-4)
    # the authors' init: zero DCN bias, N(0, 0.01) classifier
    assert torch.all(dcn.bias == 0)
    assert head.conv_logits.weight.std() < 0.02


def test_losses_and_gradients():
    head = build_head()
    feats = fpn_feats()
    losses = head.loss(feats, data_samples())
    assert set(losses) == {'loss_seg', 'loss_roi_seg'}
    total = losses['loss_seg'] + losses['loss_roi_seg']
    assert torch.isfinite(total)
    total.backward()
    for name, param in head.named_parameters():
        assert param.grad is not None, name
    # offsets are zero but they do learn
    assert head.subnet[0].conv.conv_offset.weight.grad.abs().sum() > 0
    assert head.conv_logits.weight.grad.abs().sum() > 0
    for level in feats[:4]:
        assert level.grad.abs().sum() > 0
    assert feats[4].grad is None  # P6 unused


def test_semantic_loss_is_computed_at_full_resolution():
    head = build_head(loss_roi_seg=None)
    feats = fpn_feats()
    samples = data_samples()
    loss = head.loss(feats, samples)['loss_seg']
    logits = F.interpolate(
        head(feats)['seg_preds'], size=(64, 96), mode='bilinear',
        align_corners=False)
    gt = torch.stack([s.gt_sem_seg.sem_seg[0] for s in samples]).long()
    expected = 0.2 * F.cross_entropy(logits, gt, ignore_index=255)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize('avg_non_ignore', [True, False])
def test_full_resolution_loss_matches_mmdet_cross_entropy(avg_non_ignore):
    """The head's banded L_sem has the value and gradients of mmdet's
    CrossEntropyLoss on the upsampled logits."""
    loss_cfg = dict(type='CrossEntropyLoss', ignore_index=255,
                    avg_non_ignore=avg_non_ignore, loss_weight=0.2)
    head = build_head(loss_roi_seg=None, loss_seg=loss_cfg)
    samples = data_samples()
    gt = stack_gt_sem_seg(samples)
    seg_preds = head(fpn_feats())['seg_preds'].detach()
    results = []
    for banded in (True, False):
        x = seg_preds.clone().requires_grad_()
        if banded:
            loss = head.loss_by_feat(dict(seg_preds=x), samples)['loss_seg']
        else:
            loss = MODELS.build(loss_cfg)(
                F.interpolate(x, size=gt.shape[-2:], mode='bilinear',
                              align_corners=False), gt)
        loss.backward()
        results.append((loss.detach(), x.grad))
    torch.testing.assert_close(results[0], results[1])


def test_roi_loss_aligns_the_logits_as_the_classified_crops(monkeypatch):
    """L_sem_roi from RoIAlign of the bias-free logits (+ bias) equals the
    1x1 classifier on RoIAlign crops of the 512-ch feature, with grads --
    written out here and as the head computes it for other extractors."""
    head = build_head()
    with torch.no_grad():  # a bias that matters (it starts at zero)
        head.conv_logits.bias.normal_()
    # the second box reaches outside the map, where RoIAlign's sampling
    # weights do not sum to 1
    samples = data_samples(boxes=((8., 8., 40., 40.), (-4., 30., 20., 70.)))
    gt = stack_gt_sem_seg(samples)
    rois = bbox2roi([s.gt_instances.bboxes.tensor for s in samples])
    assert head._roi_align_is_linear()
    results = []
    for way in ('linear', 'literal', 'other extractor'):
        feats = fpn_feats()
        outs = head(feats)
        if way == 'linear':
            loss = head._roi_loss(outs['seg_preds'], None, gt, samples)
        elif way == 'literal':
            logits = head.conv_logits(
                head.roi_extractor([head.concat_feats(outs['level_feats'])],
                                   rois))
            loss = head.loss_roi_seg(
                logits, crop_and_resize_labels(gt, rois, 28))
        else:
            with monkeypatch.context() as m:
                m.setattr(head, '_roi_align_is_linear', lambda: False)
                with pytest.raises(ValueError, match='level_feats'):
                    head._roi_loss(outs['seg_preds'], None, gt, samples)
                loss = head.loss_by_feat(outs, samples)['loss_roi_seg']
        loss.backward()
        results.append([loss.detach()] + [f.grad for f in feats[:4]] +
                       [head.conv_logits.weight.grad.clone()])
        head.zero_grad()
    torch.testing.assert_close(results[0], results[1])
    torch.testing.assert_close(results[0], results[2])


def test_cpu_roi_loss_aligns_without_mmcv_kernel(monkeypatch):
    """On CPU the linear RoI loss takes segext's separable RoIAlign (the
    equality with mmcv's kernel is the test above); a RoIAlign it does not
    reproduce (max pooling) goes to the extractor."""
    head = build_head()
    samples = data_samples(boxes=((8., 8., 40., 40.), ))
    gt = stack_gt_sem_seg(samples)
    seg_preds = head(fpn_feats())['seg_preds']

    def fail(*args):
        raise AssertionError('mmcv RoIAlign called')

    with monkeypatch.context() as m:
        m.setattr(head.roi_extractor, 'forward', fail)
        head._roi_loss(seg_preds, None, gt, samples)
        m.setattr(head.roi_extractor.roi_layers[0], 'pool_mode', 'max')
        with pytest.raises(AssertionError, match='mmcv RoIAlign'):
            head._align_linear(seg_preds, torch.zeros(1, 5))


def test_mmcv_roi_align_misreads_channels_last_maps():
    """Why _roi_loss hands RoIAlign contiguous maps: mmcv's RoIAlign reads
    its input as NCHW whatever its strides. When this fails,
    mmcv honours strides and the .contiguous() calls can go."""
    head = build_head()
    feat = torch.randn(1, 8, 16, 24)
    rois = torch.tensor([[0., 2., 3., 40., 50.]])
    plain = head.roi_extractor([feat], rois)
    cl = head.roi_extractor(
        [feat.contiguous(memory_format=torch.channels_last)], rois)
    assert not torch.allclose(plain, cl)


def test_roi_loss_can_be_disabled_and_survives_no_boxes():
    head = build_head(loss_roi_seg=None)
    assert not head.with_roi_loss and head.roi_extractor is None
    assert set(head.loss(fpn_feats(), data_samples())) == {'loss_seg'}
    head = build_head()
    losses = head.loss(fpn_feats(), data_samples(boxes=()))
    assert losses['loss_roi_seg'] == 0
    losses['loss_roi_seg'].backward()  # still connected to the graph


def test_crop_and_resize_labels_nearest():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :, 4:] = 1
    labels[0, 6:, :] = 2
    rois = torch.tensor([[0., 2., 0., 6., 8.]])  # x 2..6, y 0..8
    out = crop_and_resize_labels(labels, rois, 4)
    expected = torch.tensor([[0, 0, 1, 1]] * 3 + [[2, 2, 2, 2]])
    assert torch.equal(out[0], expected)


def test_stack_gt_sem_seg_pads_with_ignore():
    samples = data_samples(batch=1)
    samples[0].set_metainfo(dict(batch_input_shape=(64, 128)))
    stacked = stack_gt_sem_seg(samples)
    assert stacked.shape == (1, 64, 128)
    assert torch.all(stacked[:, :, 96:] == 255)


def test_group_norm_option():
    head = build_head(norm_cfg=dict(type='GN', num_groups=4))
    assert isinstance(head.subnet[0].norm, torch.nn.GroupNorm)
    assert head.subnet[0].conv.bias is None  # bias='auto' with a norm
    assert head(fpn_feats())['seg_preds'].shape == (2, T + S, 16, 24)


def test_bad_configs_name_the_culprit():
    with pytest.raises(ValueError, match='out_channels'):
        build_head(roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=28),
            out_channels=512,
            featmap_strides=[4]))
    with pytest.raises(ValueError, match='num_levels'):
        build_head(num_levels=5)
    with pytest.raises(ValueError, match='FPN levels'):
        build_head()(fpn_feats()[:3])
