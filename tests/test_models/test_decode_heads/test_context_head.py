"""ContextHead: class scores -> context module -> DRNHead's fixed ×8."""
import pytest
import torch
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

from segext.models.decode_heads import ContextHead, DRNHead
from segext.models.necks import ContextModule


def build(**kwargs):
    cfg = dict(type='ContextHead', in_channels=16, num_classes=6)
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def test_forward_shapes_and_backward():
    head = build(context_cfg=dict(arch='large'))
    assert isinstance(head, DRNHead)  # reuses its fixed upsampling
    assert isinstance(head.context, ContextModule)
    assert head.context.in_channels == 6 and head.context.widths[0] == 2
    x = torch.rand(2, 16, 8, 6)
    out = head([x])
    assert out.shape == (2, 6, 64, 48)  # ×8, fixed bilinear
    out.square().mean().backward()
    assert head.conv_seg.weight.grad is not None
    assert all(c.weight.grad is not None for c in head.context.convs)
    assert not any(n.startswith('up') for n, _ in head.named_parameters())


def test_identity_init_reproduces_the_front_end_head():
    """At step 0 (scores > 0 thanks to score_bias) the head = DRNHead."""
    ctx = build()
    plain = MODELS.build(dict(type='DRNHead', in_channels=16, num_classes=6))
    plain.load_state_dict(ctx.state_dict(), strict=False)
    ctx.eval(), plain.eval()
    x = torch.rand(1, 16, 5, 7)
    with torch.no_grad():
        assert (ctx.conv_seg(x) > 0).all()
        assert torch.equal(ctx([x]), plain([x]))
    # a zero-bias classifier: negative scores are truncated, not passed
    with torch.no_grad():
        for h in (ctx, plain):
            h.conv_seg.bias.fill_(-0.5)
        assert not torch.equal(ctx([x]), plain([x]))


def test_classifier_init():
    head = build(in_channels=256)
    w = head.conv_seg.weight
    assert abs(w.std().item() / 1e-3 - 1) < 0.1  # N(0, 1e-3²), 'final'
    assert torch.all(head.conv_seg.bias == 1.0)  # score_bias
    head = build(score_bias=0.0)
    assert torch.count_nonzero(head.conv_seg.bias) == 0


def test_cityscapes_preset_and_loss():
    head = build(num_classes=4,
                 context_cfg=dict(dilations='cityscapes'))
    assert len(head.context.convs) == 10
    x = torch.rand(2, 16, 4, 4)
    samples = []
    for _ in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, 32, 32)))
        samples.append(s)
    losses = head.loss([x], samples, train_cfg=None)
    assert torch.isfinite(losses['loss_ce'])
    losses['loss_ce'].backward()


@pytest.mark.parametrize('context_cfg, match', [
    (dict(in_channels=6), "must not set 'in_channels'"),
    (dict(type='ContextModule'), "must not set 'type'"),
    (dict(arch='huge'), "arch 'huge'"),
])
def test_bad_context_cfg_is_named(context_cfg, match):
    with pytest.raises(ValueError, match=match):
        ContextHead(in_channels=8, num_classes=3, context_cfg=context_cfg)
