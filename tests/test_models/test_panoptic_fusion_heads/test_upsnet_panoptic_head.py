"""UPSNetPanopticHead: hand-built cases for the panoptic logits, the training
targets with the unknown class, mask pruning and post-processing."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData, PixelData

from segext.models.panoptic_fusion_heads.mask_paste import (
    paste_mask_crops, paste_mask_logits)

T, S = 2, 2  # things 0..1, stuff 2..3 (mmdet order), VOID = 4
VOID = T + S


def build_head(**test_cfg):
    cfg = dict(mask_overlap=0.3, stuff_area_limit=0, stuff_majority_thr=0.5)
    cfg.update(test_cfg)
    return MODELS.build(
        dict(
            type='UPSNetPanopticHead',
            num_things_classes=T,
            num_stuff_classes=S,
            test_cfg=cfg))


def detections(boxes, labels, scores, mask_logit_values):
    """Detections with constant 28x28 mask logits."""
    return InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long),
        scores=torch.tensor(scores, dtype=torch.float32),
        mask_logits=torch.tensor(
            mask_logit_values, dtype=torch.float32).reshape(-1, 1, 1).expand(
                -1, 28, 28).clone())


def stuff_background(h=8, w=8):
    """Semantic logits: stuff 0 (label 2) everywhere at 0, every other class
    at -5."""
    x = torch.full((T + S, h, w), -5.)
    x[T] = 0.
    return x


def test_panoptic_logits_layout_and_unknown_logit():
    head = build_head()
    x = stuff_background()
    x[0, :3, :3] = 5.  # a confident thing with no instance over it
    x[1, 4:, 4:] = 1.
    boxes = torch.tensor([[4., 4., 8., 8.]])
    y_mask = paste_mask_logits(torch.full((1, 28, 28), 3.), boxes, (8, 8))
    z = head.panoptic_logits(x, boxes, torch.tensor([1]), y_mask)
    assert z.shape == (S + 1 + 1, 8, 8)  # [stuff, Z_1, Z_unk]
    torch.testing.assert_close(z[:S], x[T:])
    assert torch.allclose(z[S, 4:, 4:], torch.tensor(4.))  # X_mask + Y_mask
    assert torch.all(z[S, :4, :] == 0)  # zero outside the box
    # Z_unk = max_c X_thing - max_i X_mask_i
    assert z[S + 1, 1, 1] == 5.  # no instance covers it: 5 - 0
    assert z[S + 1, 5, 5] == 0.  # 1 - 1
    assert z[:, 1, 1].argmax() == S + 1  # unknown
    assert z[:, 5, 5].argmax() == S  # the instance


def test_no_instances_still_has_unknown():
    head = build_head()
    x = stuff_background()
    x[1, 0, 0] = 2.
    z = head.panoptic_logits(x, torch.zeros(0, 4), torch.zeros(0).long(),
                             torch.zeros(0, 8, 8))
    assert z.shape == (S + 1, 8, 8)
    assert z[S, 0, 0] == 2.  # outside every (no) box: max X_mask = 0
    result = head.predict([detections([], [], [], [])], [x])[0].sem_seg[0]
    assert result[0, 0] == VOID
    assert torch.all(result.flatten()[1:] == T)


def test_unknown_becomes_void_and_output_format():
    head = build_head()
    x = stuff_background()
    x[0, :3, :3] = 5.
    x[1, 4:, 4:] = 1.
    result = head.predict([detections([[4, 4, 8, 8]], [1], [0.9], [3.])],
                          [x])[0]
    pan = result.sem_seg
    assert pan.shape == (1, 8, 8) and pan.dtype == torch.int32
    pan = pan[0]
    assert torch.all(pan[:3, :3] == VOID)
    assert torch.all(pan[4:, 4:] == 1 + 1 * INSTANCE_OFFSET)
    assert pan[0, 7] == T  # stuff: id == label
    assert set(pan.unique().tolist()) == {VOID, T, 1 + INSTANCE_OFFSET}


def test_overlapping_instances_higher_z_wins():
    head = build_head()
    x = stuff_background()
    x[T] = 0.5
    x[0, 0:6, 0:6] = 1.  # Z_a = 1 + 1
    x[1, 3:8, 3:8] = 1.  # Z_b = 1 + 4
    dets = detections([[0, 0, 6, 6], [3, 3, 8, 8]], [0, 1], [0.9, 0.8],
                      [1., 4.])
    pan = head.predict([dets], [x])[0].sem_seg[0]
    a, b = 0 + 1 * INSTANCE_OFFSET, 1 + 2 * INSTANCE_OFFSET
    assert torch.all(pan[3:6, 3:6] == b)  # overlap: Z_b = 4 > Z_a = 1
    assert torch.all(pan[:3, :3] == a)
    assert torch.all(pan[6:, 6:] == b)


@pytest.mark.parametrize('seed', range(6))
def test_panoptic_argmax_equals_argmax_of_the_full_logits(seed):
    """The inference path never builds Z; it must pick what Z.argmax(0)
    picks -- also on ties (integer-valued logits make many), at pixels
    outside some boxes (Z_i = 0 there) and covered by all of them."""
    g = torch.Generator().manual_seed(seed)
    t, s, h, w = 5, 4, 23, 31
    head = MODELS.build(
        dict(type='UPSNetPanopticHead', num_things_classes=t,
             num_stuff_classes=s))
    n = [0, 1, 3, 8, 20, 40][seed]
    ints = seed % 2 == 1  # integer logits -> ties everywhere
    x = torch.randn(t + s, h, w, generator=g) * 2
    y = torch.randn(n, 28, 28, generator=g) * 2
    if ints:
        x, y = x.round(), y.round().clamp(-1, 1)
    if seed >= 2:
        x[t:] -= 3  # stuff loses often: instances and unknown compete
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) - 3
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) + 0.3
    boxes = torch.cat([xy, xy + wh], 1)
    if n > 2:
        boxes[:2] = torch.tensor([[-1., -1., w + 1., h + 1.],
                                  [2., 2., w - 2., h - 2.]])
    labels = torch.randint(0, t, (n, ), generator=g)
    ext, crops = paste_mask_crops(y, boxes, (h, w))
    # the crops themselves, pasted into zeros: an exact Y_mask (no float
    # differences between a batched and a per-box matmul)
    y_mask = torch.zeros(n, h, w)
    for m, c, (x0, y0, x1, y1) in zip(y_mask, crops, ext.tolist()):
        m[y0:y1, x0:x1] = c
    expected = head.panoptic_logits(x, boxes, labels, y_mask).argmax(0)
    pan, sem = head.panoptic_argmax(x, ext, labels, crops)
    assert torch.equal(pan, expected)
    assert torch.equal(sem, x.argmax(0))
    # every kind of channel is exercised somewhere across the seeds
    if seed == 3:
        assert {'stuff', 'instance', 'unknown'} == {
            'stuff' if v < s else 'unknown' if v == s + n else 'instance'
            for v in pan.unique().tolist()}


def test_pruning_in_predict_is_by_score():
    head = build_head()
    x = stuff_background()
    x[T] = 0.5
    x[0, 0:7, 0:7] = 1.
    x[1, 6:8, 6:8] = 1.
    # the lower-scored mask comes first in the input; it is the one pruned
    dets = detections([[1, 1, 7, 7], [0, 0, 6, 6], [6, 6, 8, 8]], [0, 0, 1],
                      [0.5, 0.9, 0.7], [2., 2., -1.])
    pan = head.predict([dets], [x])[0].sem_seg[0]
    # kept: the 0.9 mask only (instance 1); the 0.5 one is > 30% covered by
    # it, the all-negative one is empty; the thing pixels no kept mask
    # covers are unknown -> VOID
    assert set(pan.unique().tolist()) == {T, INSTANCE_OFFSET, VOID}
    assert torch.all(pan[:6, :6] == INSTANCE_OFFSET)
    assert torch.all(pan[6, 1:7] == VOID) and torch.all(pan[6:, 6:] == VOID)


def test_stuff_relabelling_by_semantic_majority():
    head = build_head()
    x = stuff_background()
    # semantic argmax inside box A is stuff 1 (label 3) on 100% of it;
    # inside box B stuff 1 on 2 of its 8 pixels only
    x[T + 1, 0:4, 0:4] = 10.
    x[T + 1, 6:8, 0:1] = 10.
    x[0, 6:8, 1:4] = 10.
    dets = detections([[0, 0, 4, 4], [0, 6, 4, 8]], [0, 0], [0.9, 0.8],
                      [30., 30.])
    pan = head.predict([dets], [x])[0].sem_seg[0]
    assert torch.all(pan[0:4, 0:4] == T + 1)  # relabelled: stuff, no id
    assert torch.all(pan[6:8, 0:4] == 0 + 2 * INSTANCE_OFFSET)  # kept


def test_stuff_area_limit():
    head = build_head(stuff_area_limit=10)
    x = stuff_background()
    x[T + 1, 0:2, 0:2] = 1.  # stuff 1 covers 4 px < 10
    pan = head.predict([detections([], [], [], [])], [x])[0].sem_seg[0]
    assert torch.all(pan[0:2, 0:2] == VOID)
    assert (pan == T).sum() == 60


def test_training_targets_with_unknown():
    head = build_head()
    sem = torch.full((8, 8), T)  # stuff 0
    sem[4:6] = 0  # instance A (thing 0)
    sem[6:, :4] = 1  # instance B (thing 1), dropped
    sem[6:, 4:] = 0  # crowd region: thing label, no instance mask
    sem[0, 0] = 255
    mask_a = (sem == 0) & (torch.arange(8)[:, None] < 6)
    target = head.panoptic_targets(sem, mask_a[None])
    unknown = S + 1
    assert torch.all(target[1:4] == 0)  # stuff keeps its stuff index
    assert target[0, 0] == 255
    assert torch.all(target[4:6] == S + 0)  # kept instance
    assert torch.all(target[6:] == unknown)  # dropped + crowd


def test_sample_instances_keep_fraction():
    head = build_head()

    def gts(n):
        return InstanceData(
            bboxes=torch.rand(n, 4), labels=torch.arange(n) % T)

    torch.manual_seed(0)
    kept = head.sample_instances([gts(5), gts(1), gts(0), gts(10), gts(400)])
    # 400 * 0.7 = 280 would put targets past the ignore index 255
    assert [len(k) for k in kept] == [3, 1, 0, 7, 254 - S]


def test_sample_instances_is_seeded_and_ordered():
    head = build_head()
    gt = InstanceData(bboxes=torch.arange(40.).view(10, 4),
                      labels=torch.zeros(10, dtype=torch.long))
    torch.manual_seed(3)
    a = head.sample_instances([gt])[0].bboxes[:, 0]
    torch.manual_seed(3)
    b = head.sample_instances([gt])[0].bboxes[:, 0]
    assert torch.equal(a, b)
    assert torch.all(a[1:] > a[:-1])  # original order kept


def _sample(h, w, boxes, labels, sem):
    masks = np.zeros((len(boxes), h, w), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        masks[i, y1:y2, x1:x2] = 1
    sample = DetDataSample(metainfo=dict(batch_input_shape=(h, w)))
    sample.gt_instances = InstanceData(
        bboxes=HorizontalBoxes(
            torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
        labels=torch.tensor(labels, dtype=torch.long),
        masks=BitmapMasks(masks, h, w))
    sample.gt_sem_seg = PixelData(sem_seg=sem[None])
    return sample


def test_loss_batches_images_with_different_instance_counts():
    head = build_head()
    h = w = 32
    sem0 = torch.full((h, w), T, dtype=torch.uint8)
    sem0[0:16, 0:16] = 0
    sem0[16:32, 16:32] = 1
    sem1 = torch.full((h, w), T + 1, dtype=torch.uint8)
    sem1[:, :4] = 255
    samples = [
        _sample(h, w, [(0, 0, 16, 16), (16, 16, 32, 32)], [0, 1], sem0),
        _sample(h, w, [], [], sem1)
    ]
    kept = [s.gt_instances for s in samples]
    torch.manual_seed(0)
    seg_preds = torch.randn(2, T + S, 8, 8, requires_grad=True)
    mask_logits = torch.randn(2, 28, 28, requires_grad=True)
    kept[0].mask_logits = mask_logits
    kept[1].mask_logits = mask_logits[:0]
    loss = head.loss(seg_preds, kept, samples)['loss_panoptic']
    loss.backward()
    assert torch.isfinite(loss)
    assert seg_preds.grad.abs().sum() > 0 and mask_logits.grad.abs().sum() > 0

    # equals per-image cross-entropy on the unpadded logits, averaged over
    # all pixels (the authors' reduction), times the loss weight
    total = 0.
    for b, sample in enumerate(samples):
        inst = kept[b]
        boxes = inst.bboxes.tensor / 4
        y_mask = paste_mask_logits(inst.mask_logits, boxes, (8, 8))
        z = head.panoptic_logits(seg_preds[b], boxes, inst.labels, y_mask)
        masks = torch.from_numpy(inst.masks.masks[:, ::4, ::4]).bool()
        target = head.panoptic_targets(
            sample.gt_sem_seg.sem_seg[0, ::4, ::4].long(), masks)
        total = total + F.cross_entropy(
            z[None], target[None], ignore_index=255, reduction='sum')
    expected = 0.1 * total / (2 * 8 * 8)
    torch.testing.assert_close(loss, expected)


def test_bad_configs_name_the_culprit():
    with pytest.raises(KeyError, match='mask_overlp'):
        build_head(mask_overlp=0.3)
    with pytest.raises(ValueError, match='keep_fraction'):
        MODELS.build(dict(type='UPSNetPanopticHead', keep_fraction=0.))
