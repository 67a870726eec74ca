"""DRNHead: the authors' 1x1 classifier + fixed bilinear x8 up-conv, and
mmseg's loss / predict resizing around it."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import nn

from segext.models.decode_heads import DRNHead
from segext.models.decode_heads.drn_head import bilinear_upsample_kernel

pytestmark = pytest.mark.usefixtures('one_thread')


def authors_up(classes):
    """The authors' up-conv, initialised by their ``fill_up_weights``
    formula (docs/drn.md, written from the facts)."""
    up = nn.ConvTranspose2d(classes, classes, 16, stride=8, padding=4,
                            groups=classes, bias=False)
    w = up.weight.data
    f = math.ceil(w.size(2) / 2)
    c = (2 * f - 1 - f % 2) / (2. * f)
    for i in range(w.size(2)):
        for j in range(w.size(3)):
            w[:, 0, i, j] = (1 - abs(i / f - c)) * (1 - abs(j / f - c))
    return up


def samples(n, h, w, classes):
    out = []
    for _ in range(n):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(
            data=torch.randint(0, classes, (1, h, w)).long())
        s.set_metainfo(dict(img_shape=(h, w), pad_shape=(h, w),
                            ori_shape=(h, w)))
        out.append(s)
    return out


def test_upsampling_is_the_authors_fixed_bilinear_deconv():
    head = DRNHead(in_channels=8, num_classes=5)
    up = authors_up(5)
    x = torch.randn(2, 5, 6, 7)
    torch.testing.assert_close(head.upsample(x), up(x).detach())
    assert tuple(head.up_weight.shape) == (5, 1, 16, 16)
    torch.testing.assert_close(bilinear_upsample_kernel(16),
                               up.weight[0, 0].detach())
    # away from the border it IS bilinear interpolation (half-pixel
    # centres, mmseg's align_corners=False)
    ref = F.interpolate(x, scale_factor=8, mode='bilinear',
                        align_corners=False)
    torch.testing.assert_close(
        head.upsample(x)[..., 8:-8, 8:-8], ref[..., 8:-8, 8:-8])


def test_upsampling_is_fixed_not_a_parameter_nor_saved():
    head = DRNHead(in_channels=8, num_classes=3)
    names = [n for n, _ in head.named_parameters()]
    assert names == ['conv_seg.weight', 'conv_seg.bias']
    assert 'up_weight' not in head.state_dict()
    before = head.up_weight.clone()
    head.init_weights()
    opt = torch.optim.SGD(head.parameters(), lr=1.0)
    head.forward([torch.randn(1, 8, 4, 4)]).sum().backward()
    opt.step()
    torch.testing.assert_close(head.up_weight, before)


def test_classifier_init_is_the_authors():
    torch.manual_seed(0)
    head = DRNHead(in_channels=512, num_classes=19)
    head.init_weights()
    w = head.conv_seg.weight
    assert abs(w.std().item() / math.sqrt(2. / 19) - 1) < 0.05
    assert torch.all(head.conv_seg.bias == 0)
    assert head.dropout is None  # the authors use no dropout


def test_full_resolution_logits_loss_and_predict():
    head = DRNHead(in_channels=16, num_classes=4)
    feats = [torch.randn(2, 16, 8, 12, requires_grad=True)]
    logits = head.forward(feats)
    assert logits.shape == (2, 4, 64, 96)
    data = samples(2, 64, 96, 4)
    losses = head.loss_by_feat(logits, data)
    labels = torch.stack([d.gt_sem_seg.data[0] for d in data])
    # label size == logits size: mmseg's resize is the identity
    torch.testing.assert_close(
        losses['loss_ce'], F.cross_entropy(logits, labels, ignore_index=255))
    losses['loss_ce'].backward()
    assert feats[0].grad is not None
    pred = head.predict(feats, [d.metainfo for d in data], test_cfg={})
    torch.testing.assert_close(pred, logits)


def test_sizes_not_divisible_by_8_are_cropped_not_stretched():
    head = DRNHead(in_channels=16, num_classes=4)
    # a 61x90 input gives ceil(61/8) x ceil(90/8) = 8 x 12 features
    logits = head.forward([torch.randn(1, 16, 8, 12)])
    assert logits.shape[-2:] == (64, 96)
    data = samples(1, 61, 90, 4)
    labels = data[0].gt_sem_seg.data
    loss = head.loss_by_feat(logits, data)['loss_ce']
    torch.testing.assert_close(
        loss, F.cross_entropy(logits[..., :61, :90], labels,
                              ignore_index=255))
    pred = head.predict_by_feat(logits, [data[0].metainfo])
    torch.testing.assert_close(pred, logits[..., :61, :90])
    # slide inference passes img_shape as a torch.Size
    pred = head.predict_by_feat(logits, [dict(img_shape=torch.Size((61,
                                                                    90)))])
    assert pred.shape[-2:] == (61, 90)
    # a genuinely different size is resized by mmseg as for any head
    pred = head.predict_by_feat(logits, [dict(img_shape=(128, 192))])
    assert pred.shape[-2:] == (128, 192)


def test_built_from_mmseg_registry_in_a_segmentor():
    init_default_scope('mmseg')
    model = MODELS.build(
        dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor'),
            backbone=dict(
                type='DRN', arch='D', depth=22, out_indices=(7, ),
                channels=(8, 8, 16, 16, 16, 32, 32, 32)),
            decode_head=dict(type='DRNHead', in_channels=32, in_index=-1,
                             num_classes=3),
            train_cfg=dict(),
            test_cfg=ConfigDict(mode='whole')))
    model.init_weights()
    x = torch.rand(2, 3, 40, 48)
    data = samples(2, 40, 48, 3)
    losses = model.loss(x, data)
    losses['decode.loss_ce'].backward()
    model.eval()
    with torch.no_grad():
        out = model.predict(x, data)
    assert out[0].pred_sem_seg.data.shape == (1, 40, 48)


@pytest.mark.parametrize('kwargs,match', [
    (dict(channels=256), r'channels=256 must equal in_channels=512'),
    (dict(upsample_ratio=3), r'upsample_ratio=3 must be an even int'),
    (dict(in_index=[0, 1], in_channels=[512, 512], channels=[512, 512],
          input_transform='resize_concat'), r'input_transform'),
])
def test_bad_arguments_name_the_value(kwargs, match):
    cfg = dict(in_channels=512, num_classes=19)
    cfg.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DRNHead(**cfg)
