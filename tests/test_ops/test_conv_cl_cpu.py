"""segext.ops.conv_cl_cpu: the stride-1 channels-last conv whose weight
gradient is a GEMM, against F.conv2d."""
import pytest
import torch
import torch.nn.functional as F

from segext.ops import conv_cl_cpu
from segext.ops.conv_cl_cpu import conv2d_channels_last


def channels_last(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype).contiguous(
        memory_format=torch.channels_last).requires_grad_()


def grads_of(fn, x, w, b, g):
    y = fn(x, w, b)
    return (y, ) + torch.autograd.grad(y, (x, w, b), g)


# (batch, in, out, H, W, kernel, padding, dilation)
CASES = [
    (2, 7, 5, 9, 11, (3, 3), (1, 1), (1, 1)),
    (1, 6, 4, 8, 8, (3, 3), (2, 2), (2, 2)),
    (2, 5, 18, 7, 6, (1, 1), (0, 0), (1, 1)),
    (1, 4, 6, 10, 7, (3, 3), (0, 0), (1, 1)),
    (1, 3, 4, 6, 9, (3, 1), (1, 0), (1, 1)),
    (2, 4, 3, 5, 8, (5, 3), (1, 1), (1, 2)),
]


@pytest.mark.parametrize('band_bytes', [16 * 2**20, 1])
@pytest.mark.parametrize('case', CASES)
def test_equals_conv2d_float64(case, band_bytes, monkeypatch):
    """Output and all gradients equal F.conv2d's (one band per image, and
    one row per band), and the custom weight gradient is the one taken."""
    monkeypatch.setattr(conv_cl_cpu, '_BAND_BYTES', band_bytes)
    batch, cin, cout, h, w, k, p, d = case
    torch.manual_seed(0)
    x = channels_last(batch, cin, h, w)
    wt = torch.randn(cout, cin, *k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(cout, dtype=torch.float64, requires_grad=True)
    y = conv2d_channels_last(x, wt, b, (1, 1), p, d)
    assert type(y.grad_fn).__name__ == '_ChannelsLastConv2dBackward'
    g = torch.randn_like(y)
    got = grads_of(lambda *a: conv2d_channels_last(*a, (1, 1), p, d), x, wt,
                   b, g)
    ref = grads_of(lambda *a: F.conv2d(*a, 1, p, d), x, wt, b, g)
    for a, r in zip(got, ref):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
    assert got[1].is_contiguous(memory_format=torch.channels_last)
    assert got[2].is_contiguous()


def test_float32_and_no_bias():
    torch.manual_seed(0)
    x = channels_last(2, 32, 15, 13, dtype=torch.float32)
    wt = torch.randn(18, 32, 3, 3, requires_grad=True)
    y = conv2d_channels_last(x, wt, None, (1, 1), (1, 1), (1, 1))
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, wt), g)
    ref = F.conv2d(x, wt, None, 1, 1)
    rx, rw = torch.autograd.grad(ref, (x, wt), g)
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gw, rw, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('layout, stride, groups, padding', [
    ('nchw', 1, 1, 1),
    ('cl', 2, 1, 1),
    ('cl', 1, 2, 1),
    ('cl', 1, 1, 3),
])
def test_other_convs_are_plain_conv2d(layout, stride, groups, padding):
    """Standard layout, stride > 1, groups, padding beyond the kernel's
    reach: F.conv2d itself (PyTorch's backward)."""
    x = torch.randn(1, 4, 9, 9, dtype=torch.float64)
    if layout == 'cl':
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    wt = torch.randn(6, 4 // groups, 3, 3, dtype=torch.float64,
                     requires_grad=True)
    y = conv2d_channels_last(x, wt, None, (stride, stride),
                             (padding, padding), (1, 1), groups)
    assert 'Convolution' in type(y.grad_fn).__name__
    torch.testing.assert_close(
        y, F.conv2d(x, wt, None, stride, padding, 1, groups))
