"""mmcv's compiled DCN v1 kernel, called as ``mmcv.ops.DeformConv2d`` does,
plus a bias (mmcv's op has none).

The path every non-CPU tensor takes (so GPU users run upstream's op), and
the one that traces and exports: mmcv's ``DeformConv2dFunction`` carries an
ONNX symbolic (``mmcv::MMCVDeformConv2d``).
"""
from typing import Optional, Tuple

import torch.nn.functional as F
from mmcv.ops import deform_conv2d as mmcv_deform_conv2d
from torch import Tensor

__all__ = ['deform_conv2d_mmcv']


def deform_conv2d_mmcv(input: Tensor, offset: Tensor, weight: Tensor,
                       bias: Optional[Tensor], stride: Tuple[int, int],
                       padding: Tuple[int,
                                      int], dilation: Tuple[int,
                                                            int], groups: int,
                       deform_groups: int, im2col_step: int) -> Tensor:
    """mmcv's kernel as ``mmcv.ops.DeformConv2d.forward`` calls it, + bias."""
    kh, kw = weight.shape[2:]
    # mmcv's kernel needs contiguous tensors; segext's op takes any layout
    input, offset = input.contiguous(), offset.contiguous()
    # as upstream's module: mmcv's kernel rejects inputs smaller than the
    # kernel, so pad bottom/right with zeros and crop the output back
    pad_h, pad_w = max(kh - input.size(2), 0), max(kw - input.size(3), 0)
    if pad_h or pad_w:
        input = F.pad(input, (0, pad_w, 0, pad_h)).contiguous()
        offset = F.pad(offset, (0, pad_w, 0, pad_h)).contiguous()
    out = mmcv_deform_conv2d(input, offset, weight, stride, padding, dilation,
                             groups, deform_groups, False, im2col_step)
    if pad_h or pad_w:
        out = out[:, :, :out.size(2) - pad_h, :out.size(3) - pad_w]
        out = out.contiguous()
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1).type_as(out)
    return out
