"""The SegNet encoder: VGG-16 with batch norm, keeping only the pooling
indices (Badrinarayanan, Kendall and Cipolla, "SegNet: A Deep Convolutional
Encoder-Decoder Architecture for Image Segmentation", TPAMI 2017, Sec. 3,
Fig. 2).

The 13 convolutions of VGG-16 (3×3, pad 1), each followed by BN and ReLU, in
5 stages that each end in a 2×2/2 max-pooling; the fully connected layers
are dropped.  Every pooling records where its maxima were — 2 bits per
pooled element, see :mod:`segext.models.layers.unpool` — for the decoder's
max-unpooling::

    stage  convs (paper names)        channels  pool   360×480 input
    1      conv1_1, conv1_2           64        pool1  -> 180×240
    2      conv2_1, conv2_2           128       pool2  -> 90×120
    3      conv3_1 .. conv3_3         256       pool3  -> 45×60
    4      conv4_1 .. conv4_3         512       pool4  -> 23×30 (ceil)
    5      conv5_1 .. conv5_3         512       pool5  -> 12×15 (ceil)

Output contract (what :class:`~segext.models.decode_heads.SegNetHead` reads,
and what passes unchanged through mmseg's ``EncoderDecoder.extract_feat``):
a :class:`SegNetEncoderOutput`, a ``NamedTuple`` — so a tuple, with the
deepest feature LAST as mmseg heads expect with ``in_index=-1``::

    out = backbone(img)            # img (N, 3, H, W)
    out.pool_indices               # tuple of 5 PoolIndices, stage 1 -> 5
    out.feature                    # == out[-1]: pool5 output
                                   # (N, 512, H/32, W/32), rounded up

``pool_indices[s]`` holds stage ``s + 1``'s packed window codes, its pooled
shape and its pre-pool size (H_s, W_s) — the size the decoder unpools to.
"""
from typing import NamedTuple, Optional, Sequence, Tuple

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm
from mmseg.registry import MODELS
from torch import Tensor

from ..layers.unpool import CompactMaxPool2d, PoolIndices

__all__ = ['SegNetVGG', 'SegNetEncoderOutput']


class SegNetEncoderOutput(NamedTuple):
    """What :class:`SegNetVGG` returns: a tuple ``(pool_indices, feature)``.

    Attributes:
        pool_indices (tuple[PoolIndices]): one per stage, shallow to deep.
        feature (Tensor): the deepest pooled feature (N, C_5, H_5, W_5).
    """
    pool_indices: Tuple[PoolIndices, ...]
    feature: Tensor


@MODELS.register_module()
class SegNetVGG(BaseModule):
    """SegNet encoder: VGG with BN, every stage ending in compact max-pooling
    (TPAMI 2017, Sec. 3, Fig. 2).  Returns a :class:`SegNetEncoderOutput`
    (see the module docstring for the contract).

    Args:
        depth (int): VGG depth, a key of ``arch_settings``; 16 is SegNet.
            Default: 16.
        in_channels (int): Input channels. Default: 3.
        stage_channels (Sequence[int]): Width of each stage. Default: VGG's
            (64, 128, 256, 512, 512); narrower only for toy runs.
        ceil_mode (bool): Pool odd sizes with a clipped last window, as
            Caffe (and so the original SegNet) does: 45 -> 23. ``False``
            drops the last row/column instead. Default: True.
        compact_indices (bool): Store the pooling indices as packed 2-bit
            window codes (True) or as torch's int64 flat indices (False; the
            same network with 32× the index bytes, for comparison).
            Default: True.
        conv_cfg (dict, optional): Conv config. Default: None (Conv2d).
        norm_cfg (dict): Norm config. Default: ``dict(type='BN')``.
        act_cfg (dict): Activation config. Default: ``dict(type='ReLU')``.
        norm_eval (bool): Keep the norm layers in eval mode (frozen running
            statistics) while training. Default: False.
        frozen_stages (int): Stages ``0 .. frozen_stages`` (0 = stage 1) stay
            in eval mode with ``requires_grad=False``; -1 freezes nothing.
            Default: -1.
        pretrained (str, optional): A checkpoint converted by
            ``tools/model_converters/vgg16bn2segnet.py``; shorthand for
            ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
        init_cfg (dict | list[dict], optional): Default: Kaiming normal for
            convs (Caffe's "msra" filler of SegNet-Tutorial), 1 for BN scale.
    """

    # depth: number of 3×3 convs per stage (VGG configurations A, B, D, E)
    arch_settings = {
        11: (1, 1, 2, 2, 2),
        13: (2, 2, 2, 2, 2),
        16: (2, 2, 3, 3, 3),
        19: (2, 2, 4, 4, 4),
    }

    def __init__(self,
                 depth: int = 16,
                 in_channels: int = 3,
                 stage_channels: Sequence[int] = (64, 128, 256, 512, 512),
                 ceil_mode: bool = True,
                 compact_indices: bool = True,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 norm_eval: bool = False,
                 frozen_stages: int = -1,
                 pretrained: Optional[str] = None,
                 init_cfg=None):
        if depth not in self.arch_settings:
            raise ValueError(
                f'SegNetVGG: depth={depth!r} is not supported; expected one '
                f'of {sorted(self.arch_settings)}')
        num_stages = len(self.arch_settings[depth])
        stage_channels = tuple(stage_channels)
        if len(stage_channels) != num_stages or not all(
                isinstance(c, int) and c > 0 for c in stage_channels):
            raise ValueError(
                f'SegNetVGG: stage_channels={stage_channels!r} must be '
                f'{num_stages} positive ints, one per stage')
        if not isinstance(frozen_stages, int) or \
                not -1 <= frozen_stages < num_stages:
            raise ValueError(
                f'SegNetVGG: frozen_stages must be an int in [-1, '
                f'{num_stages - 1}], got {frozen_stages!r}')
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError(
                    'SegNetVGG: give pretrained or init_cfg, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d', mode='fan_in',
                     nonlinearity='relu', distribution='normal'),
                dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
            ]
        super().__init__(init_cfg=init_cfg)
        self.depth = depth
        self.num_convs: Tuple[int, ...] = self.arch_settings[depth]
        self.stage_channels = stage_channels
        self.ceil_mode = ceil_mode
        self.compact_indices = compact_indices
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages

        self.stages = nn.ModuleList()
        self.pools = nn.ModuleList()
        for num_convs, out_ch in zip(self.num_convs, self.stage_channels):
            convs = []
            for _ in range(num_convs):
                convs.append(
                    ConvModule(in_channels, out_ch, 3, padding=1,
                               conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                               act_cfg=act_cfg))
                in_channels = out_ch
            self.stages.append(nn.Sequential(*convs))
            self.pools.append(
                CompactMaxPool2d(ceil_mode=ceil_mode,
                                 compact=compact_indices))
        self._freeze_stages()

    def forward(self, x: Tensor) -> SegNetEncoderOutput:
        """(N, in_channels, H, W) -> ``SegNetEncoderOutput``."""
        pool_indices = []
        for stage, pool in zip(self.stages, self.pools):
            x = stage(x)                # (N, C_s, H_s, W_s)
            x, indices = pool(x)        # (N, C_s, ceil(H_s/2), ceil(W_s/2))
            pool_indices.append(indices)
        return SegNetEncoderOutput(tuple(pool_indices), x)

    def _freeze_stages(self):
        for stage in self.stages[:self.frozen_stages + 1]:
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
