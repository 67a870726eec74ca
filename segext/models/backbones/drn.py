"""Dilated Residual Networks (DRN), registered in mmseg's and mmdet's MODELS.

Yu, Koltun, Funkhouser, "Dilated Residual Networks", CVPR 2017, and the
authors' code (github.com/fyu/drn, which adds the DRN-D family).

The paper draws DRN-A/B/C as a stem followed by eight *levels* (Sec. 4,
"Degridding", and its architecture figure).  This file builds exactly those
levels, one ``layer{i}`` per level, so that the figure can be held next to
:attr:`DRN.level_settings`::

    level  C (B)                    D                     stride  dilation
    stem   7x7 conv 3->16 s1, BN, ReLU (no max-pool)     1       1
    1      BasicBlock, 16           conv-BN-ReLU, 16      1       1
    2      BasicBlock, 32           conv-BN-ReLU, 32      2       1
    3      block, 64                block, 64             2       1
    4      block, 128               block, 128            2       1
    5      block, 256               block, 256            1       2
    6      block, 512               block, 512            1       4
    7      BasicBlock, no residual  conv-BN-ReLU, 512     1       2
           (B: with residual)
    8      BasicBlock, no residual  conv-BN-ReLU, 512     1       1
           (B: with residual)

("block" is the variant's BasicBlock or Bottleneck; Bottleneck variants have
256/512/1024/2048 channels in levels 3-6.)  DRN-A (Sec. 2) is a ResNet whose
last two stages are dilated instead of strided; its levels are the four
ResNet stages.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, build_conv_layer, build_norm_layer
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.model import BaseModule
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm
from mmseg.models.backbones.resnet import Bottleneck
from mmseg.registry import MODELS as MMSEG_MODELS
from torch import Tensor

__all__ = ['DRN', 'DRNBasicBlock']


class DRNBasicBlock(BaseModule):
    """The DRN BasicBlock: two 3x3 convs, BOTH dilated, optional residual.

    mmseg's/mmdet's ``BasicBlock`` dilates only its first conv and always adds
    the residual, so it cannot express DRN (every 3x3 conv of a dilated level
    is dilated, Sec. 2; levels 7-8 of DRN-C drop the residual, Sec. 4).
    Module names (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample.0/1``)
    follow mmseg's ResNet blocks.

    Args:
        inplanes (int): Input channels.
        planes (int): Output channels.
        stride (int): Stride of the first conv. Default: 1.
        dilation (int): Dilation (and padding) of both convs. Default: 1.
        downsample (nn.Module, optional): Projection of the residual.
        residual (bool): Add the (projected) input to the output.
            Default: True.
        conv_cfg (dict, optional): Conv layer config. Default: None.
        norm_cfg (dict): Norm layer config. Default: ``dict(type='BN')``.
        init_cfg (dict, optional): Initialization config. Default: None.
    """

    expansion = 1

    def __init__(self,
                 inplanes: int,
                 planes: int,
                 stride: int = 1,
                 dilation: int = 1,
                 downsample: Optional[nn.Module] = None,
                 residual: bool = True,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        if downsample is not None and not residual:
            raise ValueError('DRNBasicBlock: a downsample is only used by the '
                             'residual; got residual=False with a downsample')
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, planes, postfix=1)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, planes, postfix=2)
        self.conv1 = build_conv_layer(
            conv_cfg, inplanes, planes, 3, stride=stride, padding=dilation,
            dilation=dilation, bias=False)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv_layer(
            conv_cfg, planes, planes, 3, padding=dilation, dilation=dilation,
            bias=False)
        self.add_module(self.norm2_name, norm2)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.dilation = dilation
        self.residual = residual

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


@MMSEG_MODELS.register_module()
@MMDET_MODELS.register_module()
class DRN(BaseModule):
    """Dilated Residual Network backbone (DRN-A/B/C/D), output stride 8.

    Variants (:attr:`arch_settings`; blocks per level for A/B/C, blocks or
    plain conv layers per level for D):

    =====  ==========  ===========  =================================
    arch   depths      block (3-6)  per level
    =====  ==========  ===========  =================================
    A      18, 34      Basic        ResNet-18/34 stages 2-5
    A      50          Bottleneck   ResNet-50 stages 2-5
    B      26          Basic        1,1,2,2,2,2,1,1
    C      26 / 42     Basic        1,1,2,2,2,2,1,1 / 1,1,3,4,6,3,1,1
    C      58          Bottleneck   1,1,3,4,6,3,1,1
    D      22 / 24     Basic        1,1,2,2,2,2,1,1 / ...,2,2
    D      38 / 40     Basic        1,1,3,4,6,3,1,1 / ...,2,2
    D      54 / 56     Bottleneck   1,1,3,4,6,3,1,1 / ...,2,2
    D      105 / 107   Bottleneck   1,1,3,4,23,3,1,1 / ...,2,2
    =====  ==========  ===========  =================================

    Parameter counts equal the authors' models exactly (with their 1000-class
    fc added, which a backbone does not have): see docs/drn.md and
    ``tools/analysis_tools/count_drn_params.py``.

    * **B, C, D** (Sec. 4; D from the authors' code): a 16-channel
      full-resolution stem, then levels 1-8 of :attr:`level_settings`.
      Levels 5 and 6 are dilated by 2 and 4 with no stride, and every block
      of them, the first included, uses the level's dilation.  Degridding:
      levels 1-2 replace ResNet's strided conv + max-pool (C: residual
      BasicBlocks, D: plain conv layers), and levels 7-8 step the dilation
      back down (2, then 1) without residuals (B keeps them).  DRN-C-58's
      level 7 has no downsample: the authors' code builds a 2048->512
      projection its non-residual block never uses (no gradient; DDP would
      need ``find_unused_parameters``); ``drn2segext.py`` drops it.
    * **A** (Sec. 2): a ResNet (7x7 stride-2 stem + max-pool) whose stages
      2-5 have strides (1, 2, 1, 1) and dilations (1, 1, 2, 4).  As in the
      PAPER, the first block of a dilated stage keeps the previous dilation
      (stage 4: 1 then 2; stage 5: 2 then 4) -- the paper's G^4_1 and G^5_1;
      mmseg's ``contract_dilation=True`` does the same.  The authors' released
      code uses dilation 1 for the first block of stage 5 instead.

    Args:
        arch (str): 'A', 'B', 'C' or 'D'. Default: 'D'.
        depth (int): Depth, one of ``DRN.arch_settings[arch]``. Default: 22.
        in_channels (int): Input image channels. Default: 3.
        channels (Sequence[int], optional): ``planes`` of every level (the
            authors' ``channels`` argument; the stem has ``channels[0]``).
            None (default) is the paper's (16, 32, 64, 128, 256, 512, 512,
            512), or (64, 128, 256, 512) for A.  Other widths are not the
            paper's models (e.g. the CPU toy config).
        out_indices (Sequence[int], optional): Levels to output, 0-based:
            ``i`` is the paper's level ``i + 1`` (B/C/D: 0..7, strides
            1, 2, 4, 8, 8, 8, 8, 8), or ResNet stage ``i + 2`` (A: 0..3,
            strides 4, 8, 8, 8).  None (default) outputs every level, as
            mmseg's ResNet outputs every stage.
        frozen_stages (int): Freeze (eval mode, no grad) the stem and levels
            ``1..frozen_stages``; -1 freezes nothing, 0 only the stem.
            Default: -1.
        conv_cfg (dict, optional): Conv layer config. Default: None.
        norm_cfg (dict): Norm layer config, e.g. ``dict(type='SyncBN')`` or
            ``dict(type='GN', num_groups=16)``. Default: ``dict(type='BN')``.
        norm_eval (bool): Keep BN layers in eval mode while training.
            Default: False.
        with_cp (bool): Checkpoint every block (and every plain conv layer)
            to save activation memory at the cost of a second forward.
            Default: False.
        init_cfg (dict or list[dict], optional): e.g.
            ``dict(type='Pretrained', checkpoint='drn-d-22_imagenet.pth')``
            for weights converted by ``tools/model_converters/drn2segext.py``.
            Default: Kaiming (fan_out, normal) for convs as the authors,
            constant 1 for norms.

    Example:
        >>> import torch
        >>> from segext.models.backbones import DRN
        >>> model = DRN(arch='D', depth=22, out_indices=(2, 7)).eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 64, 64))]
        [(1, 64, 16, 16), (1, 512, 8, 8)]
    """

    # depth -> (block of the 'block' levels, blocks/layers per level 1..8);
    # A: the ResNet stages 2-5.
    arch_settings = {
        'A': {
            18: (DRNBasicBlock, (2, 2, 2, 2)),
            34: (DRNBasicBlock, (3, 4, 6, 3)),
            50: (Bottleneck, (3, 4, 6, 3)),
        },
        'B': {
            26: (DRNBasicBlock, (1, 1, 2, 2, 2, 2, 1, 1)),
        },
        'C': {
            26: (DRNBasicBlock, (1, 1, 2, 2, 2, 2, 1, 1)),
            42: (DRNBasicBlock, (1, 1, 3, 4, 6, 3, 1, 1)),
            58: (Bottleneck, (1, 1, 3, 4, 6, 3, 1, 1)),
        },
        'D': {
            22: (DRNBasicBlock, (1, 1, 2, 2, 2, 2, 1, 1)),
            24: (DRNBasicBlock, (1, 1, 2, 2, 2, 2, 2, 2)),
            38: (DRNBasicBlock, (1, 1, 3, 4, 6, 3, 1, 1)),
            40: (DRNBasicBlock, (1, 1, 3, 4, 6, 3, 2, 2)),
            54: (Bottleneck, (1, 1, 3, 4, 6, 3, 1, 1)),
            56: (Bottleneck, (1, 1, 3, 4, 6, 3, 2, 2)),
            105: (Bottleneck, (1, 1, 3, 4, 23, 3, 1, 1)),
            107: (Bottleneck, (1, 1, 3, 4, 23, 3, 2, 2)),
        },
    }

    # Stem: (stride, max-pool); its width is the first level's ``planes``.
    stem_settings = {
        'A': (2, True),  # ResNet stem
        'B': (1, False),
        'C': (1, False),
        'D': (1, False),
    }

    # One row per level: (kind, planes, stride, first-block dilation,
    # dilation).  kind: 'block' = the depth's block (residual); 'basic' =
    # residual DRNBasicBlock; 'basic_nores' = DRNBasicBlock without residual;
    # 'conv' = plain conv-BN-ReLU layers.
    level_settings = {
        'A': (
            ('block', 64, 1, 1, 1),  # stage 2
            ('block', 128, 2, 1, 1),  # stage 3
            ('block', 256, 1, 1, 2),  # stage 4: first block keeps dilation 1
            ('block', 512, 1, 2, 4),  # stage 5: first block keeps dilation 2
        ),
        'B': (
            ('basic', 16, 1, 1, 1),
            ('basic', 32, 2, 1, 1),
            ('block', 64, 2, 1, 1),
            ('block', 128, 2, 1, 1),
            ('block', 256, 1, 2, 2),
            ('block', 512, 1, 4, 4),
            ('basic', 512, 1, 2, 2),
            ('basic', 512, 1, 1, 1),
        ),
        'C': (
            ('basic', 16, 1, 1, 1),
            ('basic', 32, 2, 1, 1),
            ('block', 64, 2, 1, 1),
            ('block', 128, 2, 1, 1),
            ('block', 256, 1, 2, 2),
            ('block', 512, 1, 4, 4),
            ('basic_nores', 512, 1, 2, 2),
            ('basic_nores', 512, 1, 1, 1),
        ),
        'D': (
            ('conv', 16, 1, 1, 1),
            ('conv', 32, 2, 1, 1),
            ('block', 64, 2, 1, 1),
            ('block', 128, 2, 1, 1),
            ('block', 256, 1, 2, 2),
            ('block', 512, 1, 4, 4),
            ('conv', 512, 1, 2, 2),
            ('conv', 512, 1, 1, 1),
        ),
    }

    def __init__(self,
                 arch: str = 'D',
                 depth: int = 22,
                 in_channels: int = 3,
                 channels: Optional[Sequence[int]] = None,
                 out_indices: Optional[Sequence[int]] = None,
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg=[
                     dict(type='Kaiming', layer='Conv2d'),
                     dict(type='Constant', val=1,
                          layer=['_BatchNorm', 'GroupNorm'])
                 ]):
        super().__init__(init_cfg)
        if arch not in self.arch_settings:
            raise KeyError(f'DRN: invalid arch={arch!r}; expected one of '
                           f'{sorted(self.arch_settings)}')
        if depth not in self.arch_settings[arch]:
            raise KeyError(
                f'DRN: invalid depth={depth!r} for arch={arch!r}; expected '
                f'one of {sorted(self.arch_settings[arch])} (all variants: '
                f'{self.variants()})')
        self.arch = arch
        self.depth = depth
        self.block, self.level_sizes = self.arch_settings[arch][depth]
        levels = self.level_settings[arch]
        self.num_levels = len(levels)
        if out_indices is None:
            out_indices = tuple(range(self.num_levels))
        out_indices = tuple(out_indices)
        bad = [i for i in out_indices
               if not isinstance(i, int) or not -1 < i < self.num_levels]
        if bad or not out_indices:
            raise ValueError(
                f'DRN-{arch}: out_indices={out_indices!r} must be a non-empty '
                f'sequence of 0-based levels in 0..{self.num_levels - 1}; '
                f'invalid: {bad}')
        if not -1 <= frozen_stages <= self.num_levels:
            raise ValueError(
                f'DRN-{arch}: frozen_stages={frozen_stages!r} must be in '
                f'-1..{self.num_levels} (-1: none, 0: stem, i: stem and '
                f'levels 1..i)')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        if channels is None:
            channels = tuple(row[1] for row in levels)
        channels = tuple(channels)
        if len(channels) != self.num_levels or not all(
                isinstance(c, int) and c > 0 for c in channels):
            raise ValueError(
                f'DRN-{arch}: channels={channels!r} must be '
                f'{self.num_levels} positive ints, one per level')
        self.channels = channels

        # stem: H x W -> H/s x W/s
        stem_stride, with_pool = self.stem_settings[arch]
        stem_channels = channels[0]
        self.stem = ConvModule(
            in_channels, stem_channels, 7, stride=stem_stride, padding=3,
            bias=False, conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if with_pool else nn.Identity()

        self.inplanes = stem_channels
        self.level_channels = []
        self.layer_names = []
        for i, (setting, num) in enumerate(zip(levels, self.level_sizes)):
            kind, _, stride, first_dilation, dilation = setting
            layer = self._make_level(kind, channels[i], stride,
                                     first_dilation, dilation, num)
            name = f'layer{i + 1}'
            self.add_module(name, layer)
            self.layer_names.append(name)
            self.level_channels.append(self.inplanes)
        self.level_channels = tuple(self.level_channels)
        self._freeze_stages()

    @classmethod
    def variants(cls) -> list:
        """Every valid variant name, e.g. ``['DRN-A-18', ...]``."""
        return [f'DRN-{a}-{d}' for a, ds in cls.arch_settings.items()
                for d in ds]

    def _make_level(self, kind: str, planes: int, stride: int,
                    first_dilation: int, dilation: int,
                    num: int) -> nn.Sequential:
        """Level = ``num`` blocks (or plain conv layers) of one kind."""
        if kind == 'conv':
            layers = []
            for j in range(num):
                layers.append(
                    ConvModule(
                        self.inplanes, planes, 3,
                        stride=stride if j == 0 else 1,
                        padding=first_dilation if j == 0 else dilation,
                        dilation=first_dilation if j == 0 else dilation,
                        bias=False, conv_cfg=self.conv_cfg,
                        norm_cfg=self.norm_cfg))
                self.inplanes = planes
            return nn.Sequential(*layers)

        block = self.block if kind == 'block' else DRNBasicBlock
        residual = kind != 'basic_nores'
        out_planes = planes * block.expansion
        downsample = None
        if residual and (stride != 1 or self.inplanes != out_planes):
            downsample = nn.Sequential(
                build_conv_layer(self.conv_cfg, self.inplanes, out_planes, 1,
                                 stride=stride, bias=False),
                build_norm_layer(self.norm_cfg, out_planes)[1])
        extra = {} if block is Bottleneck else dict(residual=residual)
        layers = []
        for j in range(num):
            layers.append(
                block(
                    inplanes=self.inplanes,
                    planes=planes,
                    stride=stride if j == 0 else 1,
                    dilation=first_dilation if j == 0 else dilation,
                    downsample=downsample if j == 0 else None,
                    conv_cfg=self.conv_cfg,
                    norm_cfg=self.norm_cfg,
                    **extra))
            self.inplanes = out_planes
        return nn.Sequential(*layers)

    def _freeze_stages(self):
        """Stem, then levels 1..frozen_stages: eval mode, no gradients."""
        if self.frozen_stages < 0:
            return
        modules = [self.stem] + [
            getattr(self, name)
            for name in self.layer_names[:self.frozen_stages]
        ]
        for m in modules:
            m.eval()
            for param in m.parameters():
                param.requires_grad = False

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        # B/C/D: (N, 3, H, W) -> stem (N, 16, H, W) -> levels at strides
        # 1, 2, 4, 8, 8, 8, 8, 8.  A: stem + pool (N, 64, H/4, W/4) -> stages
        # at strides 4, 8, 8, 8.
        x = self.maxpool(self.stem(x))
        outs = []
        use_cp = self.with_cp and torch.is_grad_enabled()
        for i, name in enumerate(self.layer_names):
            for block in getattr(self, name):
                if use_cp:
                    x = cp.checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True):
        """Keep frozen levels frozen and, with ``norm_eval``, BN in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
