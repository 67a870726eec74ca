"""A stride-1 conv on channels-last CPU input with a GEMM weight gradient.

For a channels-last input PyTorch's CPU convolution runs oneDNN's
channels-last primitives; their forward and data gradient are fast, but the
weight gradient (``backward_weights``, a direct ``jit:avx2`` kernel) is
several times slower than the standard layout's: for the 256 -> 18 offset
conv of a deformable layer at P2 of 640x480 it takes 66 ms of a 107 ms
forward + backward on two threads (docs/deform_conv.md, "Fourth round").
:func:`conv2d_channels_last` computes that gradient as ONE matrix product
per band of rows instead:

``dL/dW[o, i, j, c] = sum_p  G[p + p_ij, o] · X[p, c]``

over the input pixels ``p`` (rows of the channels-last input, read in
place), where ``G`` is the output gradient zero-padded so that ``p + p_ij``
is the output pixel that reads pixel ``p`` through tap ``(i, j)``. The
``kh·kw`` shifted copies of ``G`` are stacked as the rows of one
``(kh·kw·O, pixels)`` matrix -- small for a conv with few outputs such as
an offset conv -- and multiplied with the input's ``(pixels, C)`` rows.
Bands of image rows are summed in order, so the result is deterministic.

The forward and the input gradient stay PyTorch's (``F.conv2d`` and
``aten::convolution_backward``). Used where it applies (CPU, float32 or
float64, channels-last input, stride 1, one group); elsewhere -- CUDA
included -- the call is plain ``F.conv2d``.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .deform_conv_cpu import _is_channels_last

__all__ = ['conv2d_channels_last']

# bytes of stacked output gradient per band of rows
_BAND_BYTES = 16 * 2**20


def _applies(input: Tensor, weight: Tensor, stride: Tuple[int, int],
             padding: Tuple[int, int], dilation: Tuple[int, int],
             groups: int) -> bool:
    """Does :func:`conv2d_channels_last` take its own weight gradient?
    (No padding beyond the kernel's reach: see :func:`_weight_grad`.)"""
    return (input.device.type == 'cpu' and _is_channels_last(input)
            and input.dtype in (torch.float32, torch.float64)
            and weight.dtype == input.dtype and tuple(stride) == (1, 1)
            and groups == 1 and all(
                p <= d * (k - 1)
                for p, d, k in zip(padding, dilation, weight.shape[2:])))


def conv2d_channels_last(input: Tensor,
                         weight: Tensor,
                         bias: Optional[Tensor],
                         stride: Tuple[int, int] = (1, 1),
                         padding: Tuple[int, int] = (0, 0),
                         dilation: Tuple[int, int] = (1, 1),
                         groups: int = 1) -> Tensor:
    """``F.conv2d`` with the GEMM weight gradient where it applies."""
    if not _applies(input, weight, stride, padding, dilation, groups):
        return F.conv2d(input, weight, bias, stride, padding, dilation,
                        groups)
    return _ChannelsLastConv2d.apply(input, weight, bias, tuple(padding),
                                     tuple(dilation))


class _ChannelsLastConv2d(torch.autograd.Function):
    """Stride-1 conv: PyTorch's forward and input gradient, the weight
    gradient from :func:`_weight_grad`."""

    @staticmethod
    def forward(ctx, input: Tensor, weight: Tensor, bias: Optional[Tensor],
                padding: Tuple[int, int], dilation: Tuple[int,
                                                          int]) -> Tensor:
        ctx.save_for_backward(input, weight)
        ctx.conv = (padding, dilation, bias is not None)
        return F.conv2d(input, weight, bias, 1, padding, dilation)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        input, weight = ctx.saved_tensors
        padding, dilation, has_bias = ctx.conv
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_input = grad_weight = grad_bias = None
        if need_input:
            grad_input = torch.ops.aten.convolution_backward(
                grad_output, input, weight, None, [1, 1], list(padding),
                list(dilation), False, [0, 0], 1, [True, False, False])[0]
        if need_weight:
            grad_weight = _weight_grad(input, grad_output, weight.shape,
                                       padding, dilation)
        if need_bias and has_bias:
            grad_bias = grad_output.sum((0, 2, 3))
        return grad_input, grad_weight, grad_bias, None, None


def _weight_grad(input: Tensor, grad_output: Tensor, weight_shape,
                 padding: Tuple[int, int],
                 dilation: Tuple[int, int]) -> Tensor:
    """dL/dW ``(O, C, kh, kw)`` as ``sum over bands of G_k · X`` (module
    docstring); ``input`` channels-last ``(B, C, H, W)``."""
    out_channels, channels, kh, kw = weight_shape
    batch, _, height, width = input.shape
    (ph, pw), (dh, dw) = padding, dilation
    # pad G by d(k-1) - p: then the output pixel reading input row y through
    # tap i is row y + d(kh-1-i) of the padded gradient
    th, tw = dh * (kh - 1) - ph, dw * (kw - 1) - pw
    g_pad = F.pad(grad_output, (tw, tw, th, th))  # (B, O, H + 2th, W + 2tw)
    x_rows = input.permute(0, 2, 3, 1).reshape(batch, height * width,
                                              channels)
    taps = kh * kw
    band = max(1, _BAND_BYTES // (taps * out_channels * width *
                                  input.element_size()))
    total = input.new_zeros(taps * out_channels, channels)
    for n in range(batch):
        for y0 in range(0, height, band):
            y1 = min(y0 + band, height)
            # (kh, kw, O, rows, W): tap (i, j)'s gradient at the band's pixels
            stacked = input.new_empty(kh, kw, out_channels, y1 - y0, width)
            for i in range(kh):
                for j in range(kw):
                    sy, sx = dh * (kh - 1 - i), dw * (kw - 1 - j)
                    stacked[i, j] = g_pad[n, :, sy + y0:sy + y1, sx:sx + width]
            # (kh*kw*O, C) += (kh*kw*O, rows*W) @ (rows*W, C)
            total.addmm_(stacked.view(taps * out_channels, -1),
                         x_rows[n, y0 * width:y1 * width])
    # (kh, kw, O, C) -> (O, C, kh, kw)
    return total.view(kh, kw, out_channels, channels).permute(2, 3, 0,
                                                              1).contiguous()
