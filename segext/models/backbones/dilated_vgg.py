"""The dilated VGG-16 front-end of Yu & Koltun, "Multi-Scale Context
Aggregation by Dilated Convolutions", ICLR 2016, Sec. 4.

VGG-16 (Simonyan & Zisserman, configuration D; no batch norm) adapted to
dense prediction: pool4 and pool5 are removed, the conv5 block is dilated by
2, and fc6/fc7 become convolutions -- fc6 a 7×7 conv dilated by 4, fc7 a 1×1
-- so the output stride is 8.  Layer names are the paper's (and the authors'
Caffe model's)::

    stage   layers                     ch      dilation  stride after
    conv1   conv1_1, conv1_2           64      1         pool1 -> 2
    conv2   conv2_1, conv2_2           128     1         pool2 -> 4
    conv3   conv3_1 .. conv3_3         256     1         pool3 -> 8
    conv4   conv4_1 .. conv4_3         512     1         (pool4 removed)
    conv5   conv5_1 .. conv5_3         512     2         (pool5 removed)
    fc      fc6 (7×7), fc7 (1×1)       4096    4, 1      8

Padding.  The authors feed a reflection-padded input (186 px per side) and
pad no intermediate map ("valid" convolutions), so every output sees only
image (or mirrored image) pixels.  Here every conv pads by
``dilation · (k - 1) / 2`` and the max-pools round up (Caffe's pooling
rounds up too), as mmseg models do: the output is ``ceil(H/8) × ceil(W/8)``
for any input, at the price of zeros entering the intermediate maps near the
border.

ImageNet weights: convert torchvision's or Caffe's VGG-16 with
``tools/model_converters/vgg2segext.py`` and load the result with
``pretrained=`` or ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.model import BaseModule
from mmseg.registry import MODELS as MMSEG_MODELS
from torch import Tensor

__all__ = ['DilatedVGG']


@MMSEG_MODELS.register_module()
@MMDET_MODELS.register_module()
class DilatedVGG(BaseModule):
    """Dilated VGG front-end (Yu & Koltun, ICLR 2016, Sec. 4), stride 8.

    Outputs, by stage index (see the module docstring): 0 ``conv1`` (stride
    1), 1 ``conv2`` (2), 2 ``conv3`` (4), 3 ``conv4`` (8), 4 ``conv5`` (8), 5
    ``fc7`` (8); each is taken after the stage's last ReLU, before its pool.
    The paper's drop6 (after fc6) is here; its drop7 (after fc7) is the
    decode head's ``dropout_ratio=0.5``, and its ``final`` 1×1 classifier is
    the head's ``conv_seg``.

    Args:
        depth (int): Only 16 (the paper's front-end). Default: 16.
        base_channels (int): Width of conv1; later stages double it up to
            ``8 × base_channels``.  64 for VGG-16; smaller for toy runs.
        fc_channels (int): Width of fc6/fc7. Default: 4096.
        out_indices (Sequence[int]): Stages to output. Default: ``(5,)``.
        dropout_ratio (float): drop6 ratio. Default: 0.5.
        frozen_stages (int): Stages ``0..frozen_stages`` stop training and
            stay in eval mode (5 freezes fc6/fc7 and drop6 too, the whole
            front-end, as when the paper trains the context module on a
            trained front-end).  Default: -1 (none).
        pretrained (str, optional): Converted VGG-16 checkpoint, mmseg's
            deprecated spelling of ``init_cfg=dict(type='Pretrained', ...)``.
        init_cfg (dict | list[dict], optional): Default: Kaiming normal for
            the convs (random init; the paper starts from ImageNet).
    """

    # depth: per stage (name, number of 3×3 convs, width / base_channels,
    # dilation, max-pool after).  VGG-16 = configuration D; pool4 and pool5
    # removed and conv5 dilated by 2 (Sec. 4).
    arch_settings = {
        16: (('conv1', 2, 1, 1, True),
             ('conv2', 2, 2, 1, True),
             ('conv3', 3, 4, 1, True),
             ('conv4', 3, 8, 1, False),
             ('conv5', 3, 8, 2, False)),
    }
    # fc6: 7×7 conv dilated by 4 (the classifier's 7×7 window, at stride 8
    # instead of 32); fc7: 1×1.
    fc_settings = (('fc6', 7, 4), ('fc7', 1, 1))

    def __init__(self,
                 depth: int = 16,
                 base_channels: int = 64,
                 fc_channels: int = 4096,
                 out_indices: Sequence[int] = (5, ),
                 dropout_ratio: float = 0.5,
                 frozen_stages: int = -1,
                 pretrained: Optional[str] = None,
                 init_cfg=None):
        if depth not in self.arch_settings:
            raise ValueError(
                f'DilatedVGG: depth={depth!r} is not supported; expected one '
                f'of {sorted(self.arch_settings)} (the paper\'s front-end)')
        for key, value in (('base_channels', base_channels),
                           ('fc_channels', fc_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'DilatedVGG: {key} must be a positive int, '
                                 f'got {value!r}')
        stages = self.arch_settings[depth]
        num_outs = len(stages) + 1
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        if (not isinstance(out_indices, Sequence) or len(out_indices) == 0
                or not all(isinstance(i, int) and 0 <= i < num_outs
                           for i in out_indices)):
            raise ValueError(
                f'DilatedVGG: out_indices must be a non-empty sequence of '
                f'stage indices in [0, {num_outs - 1}] (0-4 conv1-conv5, 5 '
                f'fc7), got {out_indices!r}')
        if not isinstance(frozen_stages, int) or \
                not -1 <= frozen_stages < num_outs:
            raise ValueError(
                f'DilatedVGG: frozen_stages must be an int in [-1, '
                f'{num_outs - 1}], got {frozen_stages!r}')
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('DilatedVGG: give pretrained or init_cfg, '
                                 'not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if init_cfg is None:
            init_cfg = dict(
                type='Kaiming', layer='Conv2d', mode='fan_in',
                nonlinearity='relu', distribution='normal', bias=0)
        super().__init__(init_cfg=init_cfg)

        self.depth = depth
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.stage_names: List[str] = []
        # (layer names, pool after) per stage, read by forward
        self.stage_layers: List[Tuple[Tuple[str, ...], bool]] = []
        in_ch = 3
        for stage, num_convs, mult, dilation, pool in stages:
            out_ch = base_channels * mult
            names = []
            for j in range(num_convs):
                name = f'{stage}_{j + 1}'
                self.add_module(
                    name,
                    nn.Conv2d(in_ch, out_ch, 3, padding=dilation,
                              dilation=dilation))
                names.append(name)
                in_ch = out_ch
            self.stage_names.append(stage)
            self.stage_layers.append((tuple(names), pool))
        for name, k, dilation in self.fc_settings:
            self.add_module(
                name,
                nn.Conv2d(in_ch, fc_channels, k,
                          padding=dilation * (k - 1) // 2,
                          dilation=dilation))
            in_ch = fc_channels
        # element-wise, as Caffe's Dropout layer
        self.drop6 = nn.Dropout(dropout_ratio) if dropout_ratio > 0 \
            else nn.Identity()
        self.stage_names.append('fc7')
        self.out_channels = tuple(
            [base_channels * s[2] for s in stages] + [fc_channels])
        self._freeze_stages()

    def _stage_modules(self, i: int) -> List[nn.Module]:
        if i < len(self.stage_layers):
            return [getattr(self, n) for n in self.stage_layers[i][0]]
        return [self.fc6, self.drop6, self.fc7]

    def _freeze_stages(self):
        for i in range(self.frozen_stages + 1):
            for m in self._stage_modules(i):
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        outs = []
        for i, (names, pool) in enumerate(self.stage_layers):
            for name in names:
                x = F.relu(getattr(self, name)(x), inplace=True)
            if i in self.out_indices:
                outs.append(x)  # (N, out_channels[i], H/2^i, W/2^i), i <= 3
            if pool:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        # conv5: (N, 8·base, H/8, W/8)
        x = self.drop6(F.relu(self.fc6(x), inplace=True))  # (N, fc, H/8, W/8)
        x = F.relu(self.fc7(x), inplace=True)  # (N, fc, H/8, W/8)
        if len(self.stage_layers) in self.out_indices:
            outs.append(x)
        return tuple(outs)
