"""segext.ops.roi_align_cpu: mmcv's average RoIAlign, separably, against
mmcv's own CPU kernel (forward and input gradient)."""
import pytest
import torch
from mmcv.ops import RoIAlign, roi_align

from segext.ops.roi_align_cpu import is_average_roi_align, roi_align_cpu

# boxes in input pixels (spatial scale 1/4 of a 23x31 map): inside, across
# the top-left corner, beyond the bottom-right corner, the whole map, a
# point, wider than the map, fully outside, on the bottom-right border, and
# two whose first bin column samples x = -1 and last bin row y = H exactly
# (both still read, from column 0 / row H-1) when aligned / not aligned,
# with one sample per bin
ROIS = [[0, 3.2, 4.1, 60.3, 80.7], [1, -10., -8., 20., 30.],
        [0, 100., 70., 130., 95.], [1, 0., 0., 124., 92.],
        [0, 5., 5., 5., 5.], [1, 118., 2., 200., 40.],
        [0, -30., -30., -5., -5.], [1, 110., 80., 124., 92.],
        [0, -4., 76., 20., 96.], [1, -6., 74., 18., 94.]]


def problem(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 7, 23, 31, generator=g, dtype=dtype)
    rois = torch.tensor(ROIS, dtype=dtype)
    grad = torch.randn(len(ROIS), 7, 5, 6, generator=g, dtype=dtype)
    return x, rois, grad


def value_and_grad(fn, x, rois, grad):
    x = x.clone().requires_grad_()
    out = fn(x, rois)
    out.backward(grad)
    return out.detach(), x.grad


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12),
                                       (torch.float32, 1e-5)])
@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 1, 3])
def test_equals_mmcv(dtype, tol, aligned, sampling_ratio):
    x, rois, grad = problem(dtype)

    def mmcv(x, rois):
        return roi_align(x, rois, (5, 6), 0.25, sampling_ratio, 'avg',
                         aligned)

    def ours(x, rois):
        return roi_align_cpu(x, rois, (5, 6), 0.25, sampling_ratio, aligned)

    want, want_grad = value_and_grad(mmcv, x, rois, grad)
    got, got_grad = value_and_grad(ours, x, rois, grad)
    assert want.abs().sum() > 0 and want_grad.abs().sum() > 0
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    torch.testing.assert_close(got_grad, want_grad, rtol=tol, atol=tol)


def test_reads_any_layout_and_is_deterministic():
    x, rois, grad = problem(torch.float32)
    fn = lambda x, rois: roi_align_cpu(x, rois, (5, 6), 0.25)  # noqa: E731
    out, g = value_and_grad(fn, x, rois, grad)
    out_cl, g_cl = value_and_grad(
        fn, x.contiguous(memory_format=torch.channels_last), rois, grad)
    torch.testing.assert_close(out_cl, out, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_cl, g, rtol=1e-6, atol=1e-6)
    again = value_and_grad(fn, x, rois, grad)
    assert torch.equal(again[0], out) and torch.equal(again[1], g)


def test_rois_outside_give_zeros_and_no_gradient():
    x, _, _ = problem(torch.float64)
    rois = torch.tensor([[0, -30., -30., -5., -5.]], dtype=torch.float64)
    out, g = value_and_grad(
        lambda x, r: roi_align_cpu(x, r, (5, 6), 0.25), x, rois,
        torch.ones(1, 7, 5, 6, dtype=torch.float64))
    assert out.abs().max() == 0 and g.abs().max() == 0


def test_no_rois():
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    out = roi_align_cpu(x, torch.zeros(0, 5), (7, 7))
    assert out.shape == (0, 3, 7, 7)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_bad_input_names_the_culprit():
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r'\(R, 5\)'):
        roi_align_cpu(x, torch.zeros(2, 4), (7, 7))
    with pytest.raises(ValueError, match='x2 >= x1'):
        roi_align_cpu(x, torch.tensor([[0., 5., 5., 2., 9.]]), (7, 7))
    with pytest.raises(ValueError, match='floating-point CPU'):
        roi_align_cpu(x.long(), torch.zeros(1, 5), (7, 7))


def test_which_layers_it_reproduces():
    assert is_average_roi_align(RoIAlign(28, 0.25, 0))
    assert not is_average_roi_align(RoIAlign(28, 0.25, 0, pool_mode='max'))
    assert not is_average_roi_align(
        RoIAlign(28, 0.25, 0, use_torchvision=True))
