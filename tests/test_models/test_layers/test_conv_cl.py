"""ChannelsLastConv2d: nn.Conv2d's parameters and gradients, the GEMM weight
gradient on channels-last CPU input (the DCN layer's offset conv)."""
import torch
import torch.nn as nn

from segext.models.layers import ChannelsLastConv2d, DeformConv2dWithOffset


def channels_last(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype).contiguous(
        memory_format=torch.channels_last).requires_grad_()


def test_offset_conv_is_a_conv2d_with_the_same_gradients():
    """The DCN layer's offset conv: nn.Conv2d's parameters and state-dict
    keys, its gradients on a channels-last input (float64), the custom
    weight gradient only where it applies."""
    torch.manual_seed(0)
    layer = DeformConv2dWithOffset(8, 6, 3, padding=1)
    assert isinstance(layer.conv_offset, ChannelsLastConv2d)
    assert isinstance(layer.conv_offset, nn.Conv2d)
    assert set(layer.state_dict()) == {
        'weight', 'bias', 'conv_offset.weight', 'conv_offset.bias'
    }
    layer = layer.double()
    nn.init.normal_(layer.conv_offset.weight, std=0.3)
    plain = nn.Conv2d(8, 18, 3, padding=1).double()
    plain.load_state_dict(layer.conv_offset.state_dict())

    x = channels_last(2, 8, 7, 9)
    out = layer.conv_offset(x)
    assert type(out.grad_fn).__name__ == '_ChannelsLastConv2dBackward'
    with torch.no_grad():
        assert layer.conv_offset(x).grad_fn is None
    assert 'Convolution' in type(
        layer.conv_offset(x.detach().contiguous()).grad_fn).__name__

    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, *layer.conv_offset.parameters()), g)
    ref = torch.autograd.grad(plain(x), (x, *plain.parameters()), g)
    for a, r in zip(got, ref):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)

    # and the whole layer trains through it
    layer(x).square().sum().backward()
    assert layer.conv_offset.weight.grad.abs().sum() > 0
