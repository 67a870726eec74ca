"""The SegNet decoder as an mmseg decode head (Badrinarayanan, Kendall and
Cipolla, TPAMI 2017, Sec. 3, Figs. 2-3).

The decoder mirrors the encoder.  Each decoder stage first max-unpools its
input with the pooling indices of the matching encoder stage — every value
goes back to where its maximum came from, zeros elsewhere, at the encoder's
pre-pool size — then densifies the sparse map with 3×3 conv + BN + ReLU
layers.  There is no learned upsampling and no interpolation: the logits
come out at the full input resolution.  Decoder channels (VGG-16 encoder)::

    stage  unpool with  convs (paper names)              channels
    5      pool5        conv5_3_D, conv5_2_D, conv5_1_D  512, 512, 512
    4      pool4        conv4_3_D, conv4_2_D, conv4_1_D  512, 512, 256
    3      pool3        conv3_3_D, conv3_2_D, conv3_1_D  256, 256, 128
    2      pool2        conv2_2_D, conv2_1_D             128, 64
    1      pool1        conv1_2_D, conv1_1_D             64, K

``conv1_1_D``, the K-class classifier (no BN, no ReLU), is mmseg's
``conv_seg``: a 3×3 conv here (SegNet-Tutorial's ``conv1_1_D``), not
mmseg's default 1×1, so ``channels`` (the width ``conv_seg`` reads) is 64.
"""
from typing import Optional, Sequence

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor

from ..layers.unpool import CompactMaxUnpool2d, PoolIndices

__all__ = ['SegNetHead']


@MODELS.register_module()
class SegNetHead(BaseDecodeHead):
    """SegNet decoder: max-unpooling with the encoder's indices + conv-BN-ReLU
    (TPAMI 2017, Sec. 3).

    Input: the output of :class:`~segext.models.backbones.SegNetVGG`, a tuple
    ``(pool_indices, feature)`` — ``pool_indices`` the per-stage
    :class:`~segext.models.layers.PoolIndices` (stage 1 first), ``feature``
    (N, ``in_channels``, H/32, W/32) the deepest pooled map.  Output: logits
    (N, ``num_classes``, H, W) at the input size (each unpooling restores
    the recorded pre-pool size, so odd sizes such as 360×480 work).

    Args:
        num_convs (Sequence[int]): Encoder convs per stage, stage 1 first;
            decoder stage s has as many. Default: VGG-16's (2, 2, 3, 3, 3).
        stage_channels (Sequence[int]): Encoder widths per stage, stage 1
            first. Default: (64, 128, 256, 512, 512).
        seg_kernel_size (int): Kernel of the classifier ``conv_seg`` (odd).
            Default: 3 (SegNet's conv1_1_D).
        **kwargs: :class:`BaseDecodeHead` arguments. ``in_channels`` and
            ``channels`` follow from ``stage_channels`` (last and first) and
            may be omitted; if given they must match. ``dropout_ratio``
            defaults to 0 (SegNet has none), ``norm_cfg`` to
            ``dict(type='BN')``.
    """

    def __init__(self,
                 num_convs: Sequence[int] = (2, 2, 3, 3, 3),
                 stage_channels: Sequence[int] = (64, 128, 256, 512, 512),
                 seg_kernel_size: int = 3,
                 **kwargs):
        num_convs, stage_channels = tuple(num_convs), tuple(stage_channels)
        if len(num_convs) != len(stage_channels) or not num_convs or \
                not all(isinstance(n, int) and n >= 1 for n in num_convs):
            raise ValueError(
                f'SegNetHead: num_convs={num_convs!r} must be positive ints, '
                f'one per stage of stage_channels={stage_channels!r}')
        if num_convs[0] < 2:
            raise ValueError(
                f'SegNetHead: num_convs[0]={num_convs[0]} must be >= 2: '
                'decoder stage 1 needs a conv before the classifier '
                '(conv_seg reads `channels`)')
        if not isinstance(seg_kernel_size, int) or seg_kernel_size % 2 == 0:
            raise ValueError(f'SegNetHead: seg_kernel_size='
                             f'{seg_kernel_size!r} must be an odd int')
        for key, expected in (('in_channels', stage_channels[-1]),
                              ('channels', stage_channels[0])):
            given = kwargs.setdefault(key, expected)
            if given != expected:
                raise ValueError(
                    f'SegNetHead: {key}={given!r} does not match '
                    f'stage_channels={stage_channels!r}: expected {expected} '
                    f'(omit {key})')
        kwargs.setdefault('dropout_ratio', 0.)
        kwargs.setdefault('norm_cfg', dict(type='BN'))
        super().__init__(**kwargs)
        self.num_convs = num_convs
        self.stage_channels = stage_channels

        self.unpool = CompactMaxUnpool2d()
        # decoder stages, deepest first (the order forward runs them)
        self.stages = nn.ModuleList()
        for s in reversed(range(len(num_convs))):
            width = stage_channels[s]
            if s > 0:  # last conv narrows to the next (shallower) stage
                widths = [width] * (num_convs[s] - 1) + [stage_channels[s - 1]]
            else:      # stage 1: the last conv is conv_seg
                widths = [width] * (num_convs[s] - 1)
            convs, in_ch = [], width
            for out_ch in widths:
                convs.append(
                    ConvModule(in_ch, out_ch, 3, padding=1,
                               conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                               act_cfg=self.act_cfg))
                in_ch = out_ch
            self.stages.append(nn.Sequential(*convs))
        self.conv_seg = nn.Conv2d(
            self.channels, self.out_channels, seg_kernel_size,
            padding=seg_kernel_size // 2)

    def _split_inputs(self, inputs):
        """``(pool_indices, feature)`` from the encoder output, checked."""
        if not (isinstance(inputs, (tuple, list)) and len(inputs) == 2
                and isinstance(inputs[-1], Tensor)
                and isinstance(inputs[0], (tuple, list))
                and all(isinstance(i, PoolIndices) for i in inputs[0])):
            found = type(inputs).__name__
            if isinstance(inputs, (tuple, list)):
                found += f' of ({", ".join(type(i).__name__ for i in inputs)})'
            raise TypeError(
                'SegNetHead expects the SegNetVGG output (pool_indices, '
                f'feature): a tuple of PoolIndices and a Tensor; got {found}')
        pool_indices, feature = inputs[0], inputs[-1]
        if len(pool_indices) != len(self.stages):
            raise ValueError(
                f'SegNetHead: got pooling indices of {len(pool_indices)} '
                f'encoder stages, but the decoder has {len(self.stages)} '
                f'stages (num_convs={self.num_convs})')
        if feature.dim() != 4 or feature.shape[1] != self.in_channels:
            raise ValueError(
                f'SegNetHead: feature of shape {tuple(feature.shape)} does '
                f'not have in_channels={self.in_channels} channels')
        return pool_indices, feature

    def forward(self, inputs) -> Tensor:
        """SegNet decoder: ``(pool_indices, feature)`` -> logits (N, K, H, W).
        """
        pool_indices, x = self._split_inputs(inputs)
        for stage, indices in zip(self.stages, reversed(pool_indices)):
            x = self.unpool(x, indices)  # sparse (N, C_s, H_s, W_s)
            x = stage(x)                 # dense  (N, C_{s-1}, H_s, W_s)
        return self.cls_seg(x)           # (N, K, H, W)

    def extra_repr(self) -> Optional[str]:
        return (super().extra_repr() + f', num_convs={self.num_convs}, '
                f'stage_channels={self.stage_channels}')
