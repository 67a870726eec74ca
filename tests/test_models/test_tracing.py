"""segext's models under ``torch.jit.trace``: DRN, the context module, SegNet
with compact (2-bit) indices and the UPSNet semantic head (deformable convs)
trace, and the traced graph gives the eager model's outputs on a NEW input
of the same shape (so nothing data-dependent was frozen into the trace)."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope

from segext.models.layers import DeformConv2dWithOffset

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

pytestmark = pytest.mark.usefixtures('one_thread')


def build(config, scope, **model_overrides):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', config))
    cfg.model.update(model_overrides)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
    model.init_weights()
    return model.eval()


class TensorForward(nn.Module):
    """``mode='tensor'`` forward of a segmentor, as get_flops traces it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return self.model(inputs, None, mode='tensor')


def assert_trace_matches(module, make_input, rtol=1e-5, atol=1e-5):
    with torch.no_grad():
        traced = torch.jit.trace(module, (make_input(0), ), check_trace=False,
                                 strict=False)
        fresh = make_input(1)
        want, got = module(fresh), traced(fresh)
    want = want if isinstance(want, (tuple, list)) else [want]
    got = got if isinstance(got, (tuple, list)) else [got]
    assert len(want) == len(got)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    return traced


def image_batch(shape):
    def make(seed):
        return torch.randn(*shape, generator=torch.Generator().manual_seed(
            seed))
    return make


def test_drn_traces():
    model = build('drn/drn-d-22_synthetic.py', 'mmseg')
    assert_trace_matches(TensorForward(model), image_batch((1, 3, 64, 96)))


def test_context_module_traces():
    model = build('drn/drn-d-22-context_synthetic.py', 'mmseg')
    # away from the identity init, so the context module does something
    torch.manual_seed(0)
    for p in model.decode_head.context.parameters():
        p.data.add_(torch.randn_like(p) * 0.05)
    assert_trace_matches(TensorForward(model), image_batch((1, 3, 64, 96)))


@pytest.mark.parametrize('compact', [True, False])
def test_segnet_traces(compact):
    model = build('segnet/segnet_vgg16-bn_synthetic.py', 'mmseg')
    model.backbone.compact_indices = compact
    for pool in model.backbone.modules():
        if hasattr(pool, 'compact'):
            pool.compact = compact
    traced = assert_trace_matches(TensorForward(model),
                                  image_batch((2, 3, 48, 66)))
    graph = str(traced.inlined_graph)
    assert 'max_unpool2d' in graph if not compact else \
        'max_pool2d_with_indices' in graph


def test_upsnet_semantic_head_traces():
    """The deformable convs trace (as mmcv's op) and match segext's CPU op
    on non-zero offsets."""
    model = build('upsnet/upsnet_r18_fpn_synthetic.py', 'mmdet')
    head = model.semantic_head
    torch.manual_seed(0)
    dcns = [m for m in head.modules() if isinstance(m, DeformConv2dWithOffset)]
    assert dcns and all(m.impl == 'auto' for m in dcns)
    for m in dcns:
        nn.init.normal_(m.conv_offset.weight, std=0.05)
    channels = head.in_channels

    class Head(nn.Module):

        def __init__(self):
            super().__init__()
            self.head = head

        def forward(self, p2):
            feats = [p2] + [p2[..., ::2**i, ::2**i] for i in range(1, 5)]
            return self.head(tuple(feats))['seg_preds']

    traced = assert_trace_matches(Head(), image_batch((1, channels, 32, 48)),
                                  rtol=1e-4, atol=1e-4)
    assert 'DeformConv2dFunction' in str(traced.inlined_graph)
