"""ContextModule (Yu & Koltun, ICLR 2016): identity init, receptive field,
neck contract, errors.  Real modules, CPU, tiny inputs."""
import math

import pytest
import torch
import torch.nn as nn

from segext.models.necks import ContextModule
from segext.models.necks.context_module import identity_init_

VOC = (1, 1, 2, 4, 8, 16, 1)                     # Table 1
CITYSCAPES = (1, 1, 2, 4, 8, 16, 32, 64, 1)      # authors' 10-layer model


def build(C, arch='basic', **kwargs):
    m = ContextModule(C, arch=arch, **kwargs)
    m.init_weights()
    return m


# --------------------------------------------------------------- structure
@pytest.mark.parametrize('arch, widths', [
    ('basic', (1, 1, 1, 1, 1, 1, 1)),
    ('large', (2, 2, 4, 8, 16, 32, 32)),      # Table 1, "large" row / C
])
def test_table1_layers(arch, widths):
    C = 3
    m = ContextModule(C, arch=arch)
    convs = list(m.convs)
    assert len(convs) == 8
    assert [c.out_channels for c in convs] == [w * C for w in widths] + [C]
    assert [c.in_channels for c in convs] == [C] + [w * C for w in widths]
    assert [c.dilation[0] for c in convs[:-1]] == list(VOC)
    assert [c.padding[0] for c in convs[:-1]] == list(VOC)  # pad = dilation
    assert [c.kernel_size for c in convs] == [(3, 3)] * 7 + [(1, 1)]
    assert m.receptive_field == 67


def test_cityscapes_preset():
    m = ContextModule(2, dilations='cityscapes')
    assert m.dilations == CITYSCAPES
    assert len(m.convs) == 10
    # large widths beyond Table 1 repeat its last entry (32C)
    assert ContextModule(1, 'large', dilations='cityscapes').widths == (
        2, 2, 4, 8, 16, 32, 32, 32, 32)


# --------------------------------------------------------- identity init
@pytest.mark.parametrize('dilations', ['voc', 'cityscapes'])
def test_basic_init_is_exact_identity(dilations):
    C = 5
    m = build(C, dilations=dilations)
    assert m.identity_noise == 0.0
    for conv in m.convs:
        assert torch.count_nonzero(conv.bias) == 0
        w = conv.weight
        c = w.shape[-1] // 2
        expected = torch.zeros_like(w)
        expected[:, :, c, c] = torch.eye(C)  # k(t, a) = 1[t = 0] 1[a = b]
        assert torch.equal(w, expected)

    # every intermediate (post-ReLU) map equals the non-negative input
    x = torch.rand(2, C, 13, 17)
    seen = []
    hooks = [conv.register_forward_hook(
        lambda mod, inp, out: seen.append(torch.relu(out)))
        for conv in m.convs[:-1]]
    with torch.no_grad():
        y = m(x)
    for h in hooks:
        h.remove()
    assert torch.equal(y, x)
    assert len(seen) == len(m.dilations)
    assert all(torch.equal(s, x) for s in seen)


def floor_rule_weight(C, c_in, c_out, k):
    """The paper's large-module kernel, entry by entry, with ε = 0."""
    w = torch.zeros(c_out, c_in, k, k)
    for b in range(c_out):
        for a in range(c_in):
            if math.floor(a * C / c_in) == math.floor(b * C / c_out):
                w[b, a, k // 2, k // 2] = C / c_out
    return w


def test_large_init_follows_floor_rule():
    C = 3
    m = build(C, 'large', identity_noise=0.0)
    for conv in m.convs:
        c_out, c_in, k, _ = conv.weight.shape
        assert torch.equal(conv.weight, floor_rule_weight(C, c_in, c_out, k))
        assert torch.count_nonzero(conv.bias) == 0
    # without ε the large module is the identity up to float summation order
    x = torch.rand(2, C, 11, 9)
    with torch.no_grad():
        torch.testing.assert_close(m(x), x, rtol=1e-6, atol=1e-6)


def test_large_init_noise_and_approximate_identity():
    C, r = 8, 1e-3
    m = build(C, 'large')  # default ε: σ = 1e-3 · C / c_{i+1}
    assert m.identity_noise == r
    for conv in m.convs:
        c_out, c_in, k, _ = conv.weight.shape
        rule = floor_rule_weight(C, c_in, c_out, k)
        on = rule != 0
        # identity taps are exact; every other entry is ε ~ N(0, σ²)
        assert torch.equal(conv.weight[on], rule[on])
        eps = conv.weight[~on]
        sigma = r * C / c_out
        assert abs(eps.std().item() / sigma - 1) < 0.2
        assert abs(eps.mean().item()) < 0.2 * sigma
    # Tolerance: ε adds to each output of a 3×3 layer a zero-mean term of
    # std ≈ σ·sqrt(9·c_i)·(C/c_i)·rms(x), i.e. 3·r·sqrt(C/m_i) relative to the
    # signal (m_i = c_i / C); summed in quadrature over the layers (m_i = 1,
    # 2, 2, 4, 8, 16, 32 and the 1×1) that is ≈ 4.7·r·sqrt(C) = 1.3 % here.
    # Taps falling off a small map only make it smaller.
    bound = 4.7 * r * math.sqrt(C)
    x = torch.rand(2, C, 24, 24)
    with torch.no_grad():
        rel = ((m(x) - x).norm() / x.norm()).item()
    assert 0.2 * bound < rel < bound


def test_identity_init_on_custom_widths():
    conv = identity_init_(nn.Conv2d(6, 4, 3, padding=1), num_channels=2)
    # C=2, c_i=6, c_{i+1}=4: out b takes in a iff floor(a/3) == floor(b/2)
    assert torch.equal(conv.weight, floor_rule_weight(2, 6, 4, 3))


def test_init_cfg_replaces_identity_init():
    m = ContextModule(
        4, init_cfg=dict(type='Normal', std=0.5, layer='Conv2d'))
    m.init_weights()
    w = m.convs[0].weight
    assert torch.count_nonzero(w[:, :, 0, 0]) > 0


# --------------------------------------------------------- receptive field
def measured_receptive_field(m, size):
    """Support of d out[centre] / d input, with all-positive weights so every
    ReLU is open and every path counts."""
    with torch.no_grad():
        for conv in m.convs:
            fan_in = conv.weight[0].numel()
            conv.weight.fill_(1.0 / fan_in)
            conv.bias.zero_()
    x = torch.ones(1, m.in_channels, size, size, requires_grad=True)
    y = m(x)
    y[0, 0, size // 2, size // 2].backward()
    support = x.grad[0].abs().sum(0) > 0
    rows = support.any(1).nonzero().flatten()
    cols = support.any(0).nonzero().flatten()
    h = (rows.max() - rows.min() + 1).item()
    w = (cols.max() - cols.min() + 1).item()
    assert support.sum().item() == h * w, 'receptive field has holes'
    return h, w


@pytest.mark.parametrize('arch', ['basic', 'large'])
def test_receptive_field_default(arch):
    m = ContextModule(2, arch)
    assert measured_receptive_field(m, 75) == (67, 67)


def test_receptive_field_cityscapes():
    rf = 1 + sum((3 - 1) * d for d in CITYSCAPES)   # = 259
    assert rf == 259
    m = ContextModule(1, dilations='cityscapes')
    assert m.receptive_field == rf
    assert measured_receptive_field(m, rf + 4) == (rf, rf)


# ------------------------------------------------------------- neck form
def test_neck_contract_and_registries():
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmseg.registry import MODELS as MMSEG_MODELS
    cfg = dict(type='ContextModule', in_channels=4, arch='large', in_index=1)
    for registry in (MMSEG_MODELS, MMDET_MODELS):
        neck = registry.build(cfg)
        neck.init_weights()
        feats = (torch.rand(2, 3, 16, 16), torch.rand(2, 4, 8, 8))
        outs = neck(feats)
        assert isinstance(outs, tuple) and len(outs) == 2
        assert outs[0] is feats[0]
        assert outs[1].shape == feats[1].shape
        outs[1].sum().backward()
        assert all(c.weight.grad is not None for c in neck.convs)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize('kwargs, match', [
    (dict(in_channels=0), 'in_channels'),
    (dict(in_channels=4.0), 'in_channels'),
    (dict(in_channels=4, dilations=[]), 'dilations'),
    (dict(in_channels=4, dilations=[1, 0, 2]), 'dilations'),
    (dict(in_channels=4, dilations=[1, 2.5]), 'dilations'),
    (dict(in_channels=4, dilations='kitti'), "preset 'kitti'"),
    (dict(in_channels=4, arch='huge'), "arch 'huge'"),
    (dict(in_channels=4, arch=(1, 2)), '2 width multipliers'),
    (dict(in_channels=4, arch=(1, 0, 1, 1, 1, 1, 1)), 'arch'),
    (dict(in_channels=4, identity_noise=-1), 'identity_noise'),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContextModule(**kwargs)


def test_bad_inputs_are_named():
    m = build(4)
    with pytest.raises(ValueError, match=r'C=4.*\(1, 3, 8, 8\)'):
        m(torch.rand(1, 3, 8, 8))
    with pytest.raises(TypeError, match='non-empty tuple'):
        m(())
    with pytest.raises(IndexError, match='in_index=3'):
        ContextModule(4, in_index=3)((torch.rand(1, 4, 4, 4), ))
