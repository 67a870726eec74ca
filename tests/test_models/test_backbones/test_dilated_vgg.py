"""DilatedVGG: the VGG-16 front-end of Yu & Koltun (ICLR 2016, Sec. 4)."""
import math

import pytest
import torch

from segext.models.backbones import DilatedVGG

# VGG-16 (configuration D) convolutions: (in, out) of every 3×3 layer
VGG16_CONVS = [(3, 64), (64, 64),
               (64, 128), (128, 128),
               (128, 256), (256, 256), (256, 256),
               (256, 512), (512, 512), (512, 512),
               (512, 512), (512, 512), (512, 512)]


def test_parameter_count_matches_vgg16():
    conv_params = sum(9 * i * o + o for i, o in VGG16_CONVS)
    assert conv_params == 14_714_688          # VGG-16 conv part, well known
    fc6 = 512 * 7 * 7 * 4096 + 4096           # 102,764,544
    fc7 = 4096 * 4096 + 4096                  # 16,781,312
    fc8 = 4096 * 1000 + 1000                  # not in the front-end
    assert conv_params + fc6 + fc7 + fc8 == 138_357_544  # VGG-16 total

    with torch.device('meta'):  # shapes only: 134M parameters, no memory
        m = DilatedVGG()
    params = dict(m.named_parameters())
    convs = [n for n in params if n.startswith('conv') and
             n.endswith('.weight')]
    assert len(convs) == 13
    assert sum(p.numel() for n, p in params.items()
               if n.startswith('conv')) == conv_params
    assert params['fc6.weight'].shape == (4096, 512, 7, 7)
    assert params['fc7.weight'].shape == (4096, 4096, 1, 1)
    assert sum(p.numel() for p in params.values()) == conv_params + fc6 + fc7


def test_layers_follow_the_paper():
    with torch.device('meta'):
        m = DilatedVGG()
    for name in ('conv4_3', 'conv1_1'):
        conv = getattr(m, name)
        assert conv.dilation == (1, 1) and conv.padding == (1, 1)
    for j in (1, 2, 3):  # conv5 block dilated by 2, padded to keep size
        conv = getattr(m, f'conv5_{j}')
        assert conv.dilation == (2, 2) and conv.padding == (2, 2)
    assert m.fc6.kernel_size == (7, 7) and m.fc6.dilation == (4, 4)
    assert m.fc6.padding == (12, 12)
    assert m.fc7.kernel_size == (1, 1)
    # pool1-3 kept, pool4 and pool5 removed
    assert [pool for _, pool in m.stage_layers] == [True, True, True, False,
                                                    False]
    assert m.out_channels == (64, 128, 256, 512, 512, 4096)


@pytest.mark.parametrize('size', [(40, 48), (35, 21)])
def test_forward_output_stride_8(size):
    H, W = size
    m = DilatedVGG(base_channels=4, fc_channels=8,
                   out_indices=(0, 1, 2, 3, 4, 5))
    m.init_weights()
    x = torch.rand(2, 3, H, W)
    outs = m(x)
    strides = (1, 2, 4, 8, 8, 8)
    chans = (4, 8, 16, 32, 32, 8)
    assert len(outs) == 6
    for out, s, c in zip(outs, strides, chans):
        # same padding + ceil-mode pools: ceil(H / s) for any size
        assert out.shape == (2, c, math.ceil(H / s), math.ceil(W / s))
    outs[-1].mean().backward()
    assert m.conv1_1.weight.grad is not None
    assert m.fc7.weight.grad.abs().sum() > 0


def test_default_output_and_dropout():
    m = DilatedVGG(base_channels=2, fc_channels=4, dropout_ratio=0.0)
    outs = m(torch.rand(1, 3, 16, 16))
    assert len(outs) == 1 and outs[0].shape == (1, 4, 2, 2)
    assert isinstance(m.drop6, torch.nn.Identity)
    assert isinstance(DilatedVGG(base_channels=2, fc_channels=4).drop6,
                      torch.nn.Dropout)


def test_pretrained_is_loaded(tmp_path):
    src = DilatedVGG(base_channels=2, fc_channels=4)
    src.init_weights()
    path = tmp_path / 'vgg.pth'
    torch.save({'state_dict': src.state_dict()}, path)
    dst = DilatedVGG(base_channels=2, fc_channels=4, pretrained=str(path))
    assert dst.init_cfg == dict(type='Pretrained', checkpoint=str(path))
    dst.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_registered_in_mmseg():
    from mmseg.registry import MODELS
    m = MODELS.build(dict(type='DilatedVGG', base_channels=2, fc_channels=4,
                          out_indices=(3, 5)))
    assert [o.shape[1] for o in m(torch.rand(1, 3, 16, 16))] == [16, 4]


@pytest.mark.parametrize('kwargs, match', [
    (dict(depth=19), 'depth=19'),
    (dict(out_indices=(6, )), r'out_indices.*\(6,\)'),
    (dict(out_indices=()), 'out_indices'),
    (dict(base_channels=0), 'base_channels'),
    (dict(fc_channels=None), 'fc_channels'),
    (dict(pretrained='x.pth', init_cfg=dict(type='Kaiming')), 'not both'),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DilatedVGG(**kwargs)


def test_frozen_stages():
    m = DilatedVGG(base_channels=2, fc_channels=4, frozen_stages=5)
    m.train()
    assert not any(p.requires_grad for p in m.parameters())
    assert not m.drop6.training and not m.fc6.training
    m = DilatedVGG(base_channels=2, fc_channels=4, frozen_stages=1)
    m.train()
    assert not m.conv2_2.weight.requires_grad
    assert m.conv3_1.weight.requires_grad and m.drop6.training
    with pytest.raises(ValueError, match='frozen_stages'):
        DilatedVGG(frozen_stages=6)
