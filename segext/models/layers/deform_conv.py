"""The DCN v1 layer (``'DCNv1'``) and the choice of implementation per call.

DCN v1 (Dai et al., "Deformable Convolutional Networks", ICCV 2017, eq.
(1)-(2)) samples the input at the taps of a kh×kw kernel shifted by learned,
fractional offsets. UPSNet (Xiong et al. 2019, Sec. 3.1) uses it in its
semantic head, with a bias and a zero-initialised offset conv so that
training starts from a plain conv.

Two implementations sit behind :func:`deform_conv2d`, chosen per call (its
``impl`` argument) or per layer (``DeformConv2dWithOffset(impl=...)``, i.e.
``conv_cfg=dict(type='DCNv1', impl=...)`` in a config); there is no global
switch:

* ``'mmcv'``: mmcv's compiled kernel (:mod:`segext.ops.deform_conv_mmcv`),
  always used on CUDA and any other non-CPU device, so GPU users get
  upstream's op; also what ``'auto'`` runs while tracing or exporting
  (``torch.jit.trace``, ``torch.onnx.export``), because mmcv's op records as
  one node with an ONNX symbolic;
* ``'segext'``: segext's CPU op (:mod:`segext.ops.deform_conv_cpu`), what
  ``'auto'`` runs for float32/float64 CPU tensors otherwise.
"""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor
from torch.nn.modules.utils import _pair

from segext.ops.deform_conv_cpu import CPU_DTYPES, deform_conv2d_cpu
from segext.ops.deform_conv_mmcv import deform_conv2d_mmcv
from segext.ops.tracing import is_recording

from .conv_cl import ChannelsLastConv2d

__all__ = [
    'IMPLS', 'deform_conv2d', 'select_deform_conv_impl',
    'DeformConv2dWithOffset'
]

IMPLS = ('auto', 'mmcv', 'segext')

IntPair = Union[int, Tuple[int, int]]


def _check_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}')


def select_deform_conv_impl(input: Tensor, impl: str = 'auto') -> str:
    """Name the implementation :func:`deform_conv2d` runs for ``input``.

    ``'auto'`` is segext's op for float32/float64 CPU tensors and mmcv's
    kernel for anything else (CUDA and other devices, half precision) and
    while the model is traced or exported.
    """
    _check_impl(impl)
    if impl == 'auto':
        on_cpu = input.device.type == 'cpu'
        impl = 'segext' if on_cpu and input.dtype in CPU_DTYPES \
            and not is_recording() else 'mmcv'
    if impl == 'segext' and input.device.type != 'cpu':
        raise ValueError('the segext deformable conv runs on CPU tensors '
                         f'only, got a tensor on {input.device}')
    return impl


def deform_conv2d(input: Tensor,
                  offset: Tensor,
                  weight: Tensor,
                  bias: Optional[Tensor] = None,
                  stride: IntPair = 1,
                  padding: IntPair = 0,
                  dilation: IntPair = 1,
                  groups: int = 1,
                  deform_groups: int = 1,
                  im2col_step: int = 32,
                  impl: str = 'auto') -> Tensor:
    """DCN v1 (Dai et al. 2017, eq. (1)-(2)) with an optional bias.

    Args:
        input (Tensor): (B, C, H, W).
        offset (Tensor): (B, deform_groups*kh*kw*2, Ho, Wo), mmcv's layout:
            per deformable group, per tap (row-major), (dy, dx).
        weight (Tensor): (O, C/groups, kh, kw).
        bias (Tensor, optional): (O,).
        stride, padding, dilation (int | tuple[int, int]): as ``F.conv2d``.
        groups (int): conv groups. deform_groups (int): offset groups.
        im2col_step (int): images per call of mmcv's kernel (mmcv only).
        impl (str): 'auto' (segext's op for float CPU tensors, mmcv's
            kernel otherwise; see :func:`select_deform_conv_impl`), 'mmcv'
            or 'segext'.

    Returns:
        Tensor: (B, O, Ho, Wo).
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if select_deform_conv_impl(input, impl) == 'segext':
        return deform_conv2d_cpu(input, offset, weight, bias, stride, padding,
                                 dilation, groups, deform_groups)
    return deform_conv2d_mmcv(input, offset, weight, bias, stride, padding,
                              dilation, groups, deform_groups, im2col_step)


@MODELS.register_module('DCNv1')
class DeformConv2dWithOffset(BaseModule):
    """DCN v1 layer with its own offset conv and a bias (UPSNet Sec. 3.1).

    ``conv_offset``, a plain conv with the same kernel, stride, padding and
    dilation, predicts the 2·deform_groups·kh·kw offsets (Dai et al. 2017,
    Sec. 2.1); its weight and bias start at zero, so the layer starts as a
    plain conv. Unlike ``mmcv.ops.DeformConv2dPack`` the main conv may carry
    a bias. Registered as ``'DCNv1'`` in mmengine's root ``MODELS``, so
    ``conv_cfg=dict(type='DCNv1')`` works with ``build_conv_layer`` and
    ``ConvModule``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
        groups: as ``nn.Conv2d``.
        deform_groups (int): channel groups sharing one set of offsets.
        bias (bool): learn a bias on the deformable conv. Default True.
        impl (str): 'auto', 'mmcv' or 'segext'; see :func:`deform_conv2d`.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: IntPair = 3,
                 stride: IntPair = 1,
                 padding: IntPair = 1,
                 dilation: IntPair = 1,
                 groups: int = 1,
                 deform_groups: int = 1,
                 bias: bool = True,
                 impl: str = 'auto',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f'in_channels {in_channels} and out_channels '
                             f'{out_channels} must be divisible by groups '
                             f'{groups}')
        if in_channels % deform_groups:
            raise ValueError(f'in_channels {in_channels} must be divisible '
                             f'by deform_groups {deform_groups}')
        _check_impl(impl)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deform_groups = deform_groups
        self.impl = impl
        # attributes nn.Conv2d users (and ConvModule) look for
        self.transposed = False
        self.output_padding = (0, 0)
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups,
                        *self.kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter('bias', None)
        self.conv_offset = ChannelsLastConv2d(in_channels,
                                              deform_groups * 2 *
                                              self.kernel_size[0] *
                                              self.kernel_size[1],
                                              kernel_size=self.kernel_size,
                                              stride=self.stride,
                                              padding=self.padding,
                                              dilation=self.dilation,
                                              bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s init for weight and bias; zero offset conv."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)
        self.init_offset()

    def init_offset(self) -> None:
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def init_weights(self) -> None:
        # a parent's init_cfg (e.g. Kaiming on every 'Conv2d') reaches
        # conv_offset before this runs; the offsets must still start at zero
        super().init_weights()
        self.init_offset()

    def forward(self, x: Tensor) -> Tensor:
        offset = self.conv_offset(x)  # (B, dg*kh*kw*2, Ho, Wo)
        return deform_conv2d(x,
                             offset,
                             self.weight,
                             self.bias,
                             self.stride,
                             self.padding,
                             self.dilation,
                             self.groups,
                             self.deform_groups,
                             impl=self.impl)

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, '
                f'kernel_size={self.kernel_size}, stride={self.stride}, '
                f'padding={self.padding}, dilation={self.dilation}, '
                f'groups={self.groups}, deform_groups={self.deform_groups}, '
                f'bias={self.bias is not None}, impl={self.impl!r}')
