"""``nn.Conv2d`` with a faster weight gradient on channels-last CPU input."""
import torch
import torch.nn as nn
from torch import Tensor

from segext.ops.conv_cl_cpu import conv2d_channels_last
from segext.ops.tracing import is_recording

__all__ = ['ChannelsLastConv2d']


class ChannelsLastConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight gradient on a channels-last CPU input is a
    GEMM (:mod:`segext.ops.conv_cl_cpu`).

    The same parameters, state-dict keys, forward and gradients as
    ``nn.Conv2d``. oneDNN's channels-last ``backward_weights`` is several
    times slower than its standard-layout one on this project's CPU; convs
    that see channels-last inputs in training use this class: the
    deformable layers' offset convs on CPU (their forward + backward:
    0.44-0.84x the time, docs/deform_conv.md, "Fourth round"). Stride > 1,
    groups, other padding modes, the standard layout, CUDA, tracing and
    no-grad calls run ``nn.Conv2d``'s forward.
    """

    def forward(self, x: Tensor) -> Tensor:
        if is_recording() or not torch.is_grad_enabled() \
                or self.padding_mode != 'zeros':
            return super().forward(x)
        return conv2d_channels_last(x, self.weight, self.bias, self.stride,
                                    self.padding, self.dilation, self.groups)
