"""The dilated context module of Yu & Koltun, "Multi-Scale Context
Aggregation by Dilated Convolutions", ICLR 2016 (Sec. 3, Table 1).

A stack of 3×3 convolutions with exponentially growing dilation and a final
1×1 convolution: C×H×W in, C×H×W out, no pooling, no subsampling.  In the
paper C is the number of classes and the module sits on the front-end's
class-score map; as a neck it can follow any backbone level.

Two forms:

* :class:`ContextModule` -- the module itself (mmseg and mmdet ``MODELS``).
  Given a tensor it returns a tensor; given the tuple of backbone features it
  replaces the ``in_index``-th one and returns the tuple, as mmseg necks do.
* ``ContextHead`` (``segext.models.decode_heads.context_head``) -- the
  paper's arrangement: class scores -> context module -> ×8 upsampling.
"""
from __future__ import annotations

from numbers import Integral
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.model import BaseModule
from mmseg.registry import MODELS as MMSEG_MODELS
from torch import Tensor

__all__ = ['ContextModule', 'identity_init_']


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


@torch.no_grad()
def identity_init_(conv: nn.Conv2d,
                   num_channels: int,
                   noise_ratio: float = 0.0,
                   generator: Optional[torch.Generator] = None) -> nn.Conv2d:
    """Identity initialisation of one context layer (Yu & Koltun, Sec. 3).

    For a layer with ``c_i`` inputs and ``c_{i+1}`` outputs in a module whose
    input and output have ``C = num_channels`` channels::

        k_b(t, a) = C / c_{i+1}   if t = 0 and
                                  floor(a·C / c_i) = floor(b·C / c_{i+1})
                    ε             otherwise, ε ~ N(0, σ²),
                                  σ = noise_ratio · C / c_{i+1}

    (``t`` the tap offset from the kernel centre, ``a`` the input and ``b``
    the output channel); the bias is zero.  With ``c_i = c_{i+1} = C`` and
    ``noise_ratio = 0`` this is the paper's basic rule ``k(t, a) = 1[t = 0]
    1[a = b]``.  Every channel ``b`` of a width-``c`` layer then carries
    ``(C / c) · x_{floor(b·C / c)}``, so a stack of such layers reproduces
    its (non-negative) input exactly.
    """
    c_out, c_in, kh, kw = conv.weight.shape
    scale = num_channels / c_out
    if noise_ratio > 0:
        weight = torch.randn(
            conv.weight.shape, generator=generator, dtype=conv.weight.dtype)
        weight.mul_(noise_ratio * scale)
    else:
        weight = torch.zeros_like(conv.weight, device='cpu')
    a = torch.arange(c_in)
    b = torch.arange(c_out)
    # (c_out, c_in): floor(a·C / c_i) == floor(b·C / c_{i+1}), integer floors
    match = (a[None, :] * num_channels // c_in) == (
        b[:, None] * num_channels // c_out)
    centre = weight[:, :, kh // 2, kw // 2]  # view, (c_out, c_in)
    centre[match] = scale
    conv.weight.copy_(weight)
    if conv.bias is not None:
        conv.bias.zero_()
    return conv


@MMSEG_MODELS.register_module()
@MMDET_MODELS.register_module()
class ContextModule(BaseModule):
    """Dilated context module (Yu & Koltun, ICLR 2016, Table 1).

    Layers ``1..n`` are 3×3 convolutions with the given dilations, each padded
    by its dilation (resolution kept) and followed by a ReLU ("truncation");
    layer ``n+1`` is a 1×1 convolution back to ``C`` channels with no
    truncation.  With the default dilations ``(1, 1, 2, 4, 8, 16, 1)`` the
    receptive field is 67×67 (``1 + 2·Σ d``); the ``'cityscapes'`` preset
    ``(1, 1, 2, 4, 8, 16, 32, 64, 1)`` -- the authors' 10-layer Cityscapes
    model -- reaches 259×259.

    Weights are identity-initialised (:func:`identity_init_`, Sec. 3):
    the basic module starts as the identity on non-negative input; the large
    one adds ε ~ N(0, σ²) with ``σ = identity_noise · C / c_{i+1}``.  ε breaks
    a symmetry: the floor rule copies every input channel into
    ``c_{i+1} / C`` identical channels, which without noise would receive
    identical gradients and stay copies for ever.  The default
    ``identity_noise = 1e-3`` keeps every ε three orders of magnitude below
    the identity tap, so the initial output is within a few per cent of the
    input (see ``docs/context_module.md`` for the estimate).  An explicit
    ``init_cfg`` replaces the identity initialisation (e.g. to reproduce the
    paper's random-init baseline).

    Args:
        in_channels (int): ``C``, the channels of the input and output map
            (the number of classes in the paper).
        arch (str | Sequence[int]): ``'basic'`` or ``'large'`` (Table 1), or
            the output width of every 3×3 layer as a multiple of ``C``.
            Default: ``'basic'``.
        dilations (str | Sequence[int]): dilation of every 3×3 layer, or a
            preset name from :attr:`dilation_presets` (``'voc'``,
            ``'cityscapes'``).  Default: ``'voc'``, i.e. Table 1.
        in_index (int): neck form only -- which of the input features the
            module transforms.  Default: -1 (the last, stride-8 one).
        identity_noise (float, optional): ``σ / (C / c_{i+1})``.  Default:
            None = 0 when every width is C (basic: the paper's exact
            identity), else 1e-3 (our choice; the paper asks only
            σ ≪ C / c_{i+1}).
        init_cfg (dict | list[dict], optional): replaces the identity init.
    """

    # Table 1, rows "basic" / "large": output channels of the 3×3 layers as
    # multiples of C; the final 1×1 layer always maps back to C.  With more
    # 3×3 layers than listed (the 'cityscapes' preset) the last entry repeats.
    arch_settings = {
        'basic': (1, 1, 1, 1, 1, 1, 1),
        'large': (2, 2, 4, 8, 16, 32, 32),
    }
    # Dilations of the 3×3 layers.  'voc': Table 1 (8 layers, rf 67×67);
    # 'cityscapes': the authors' 10-layer model for 1024×2048 input (rf 259).
    dilation_presets = {
        'voc': (1, 1, 2, 4, 8, 16, 1),
        'cityscapes': (1, 1, 2, 4, 8, 16, 32, 64, 1),
    }

    def __init__(self,
                 in_channels: int,
                 arch: Union[str, Sequence[int]] = 'basic',
                 dilations: Union[str, Sequence[int]] = 'voc',
                 in_index: int = -1,
                 identity_noise: Optional[float] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not _is_int(in_channels) or in_channels < 1:
            raise ValueError(
                f'ContextModule: in_channels must be a positive int (C, the '
                f'channels of the input map), got {in_channels!r}')
        if not _is_int(in_index):
            raise TypeError(
                f'ContextModule: in_index must be an int, got {in_index!r}')
        self.in_channels = int(in_channels)
        self.in_index = int(in_index)
        self.dilations = self._parse_dilations(dilations)
        self.widths = self._parse_widths(arch, len(self.dilations))
        self.arch = arch if isinstance(arch, str) else tuple(arch)
        if identity_noise is None:
            # the paper: exact identity when every width is C (basic),
            # ε otherwise (large); 1e-3 -- see the class docstring
            identity_noise = 0.0 if all(w == 1 for w in self.widths) else 1e-3
        if not isinstance(identity_noise, (int, float)) or isinstance(
                identity_noise, bool) or identity_noise < 0:
            raise ValueError(
                f'ContextModule: identity_noise must be a float >= 0 (σ as a '
                f'fraction of C / c_(i+1)), got {identity_noise!r}')
        self.identity_noise = float(identity_noise)
        # receptive field of one output pixel, in input pixels (Table 1)
        self.receptive_field = 1 + 2 * sum(self.dilations)

        C = self.in_channels
        chans = [C] + [w * C for w in self.widths]
        self.convs = nn.ModuleList()
        for c_in, c_out, d in zip(chans[:-1], chans[1:], self.dilations):
            # 3×3, padded by its dilation: resolution kept
            self.convs.append(
                nn.Conv2d(c_in, c_out, 3, padding=d, dilation=d))
        self.convs.append(nn.Conv2d(chans[-1], C, 1))  # final 1×1, no ReLU

    # ------------------------------------------------------------------ args
    def _parse_dilations(self, dilations) -> Tuple[int, ...]:
        if isinstance(dilations, str):
            if dilations not in self.dilation_presets:
                raise ValueError(
                    f'ContextModule: unknown dilations preset {dilations!r}; '
                    f'expected one of {sorted(self.dilation_presets)} or a '
                    f'sequence of positive ints')
            return self.dilation_presets[dilations]
        if (not isinstance(dilations, Sequence) or len(dilations) == 0
                or not all(_is_int(d) and d >= 1 for d in dilations)):
            raise ValueError(
                f'ContextModule: dilations must be a non-empty sequence of '
                f'positive ints (one per 3×3 layer) or a preset name from '
                f'{sorted(self.dilation_presets)}, got {dilations!r}')
        return tuple(int(d) for d in dilations)

    def _parse_widths(self, arch, num_layers: int) -> Tuple[int, ...]:
        if isinstance(arch, str):
            if arch not in self.arch_settings:
                raise ValueError(
                    f'ContextModule: unknown arch {arch!r}; expected one of '
                    f'{sorted(self.arch_settings)} or a sequence of '
                    f'per-layer width multipliers')
            table = self.arch_settings[arch]
            return tuple(table[min(i, len(table) - 1)]
                         for i in range(num_layers))
        if (not isinstance(arch, Sequence)
                or not all(_is_int(w) and w >= 1 for w in arch)):
            raise ValueError(
                f'ContextModule: arch must be {sorted(self.arch_settings)} or '
                f'a sequence of positive int width multipliers (one per 3×3 '
                f'layer), got {arch!r}')
        if len(arch) != num_layers:
            raise ValueError(
                f'ContextModule: arch gives {len(arch)} width multipliers but '
                f'dilations {self.dilations} has {num_layers} 3×3 layers')
        return tuple(int(w) for w in arch)

    # ------------------------------------------------------------------ init
    def init_weights(self):
        """Identity initialisation (Sec. 3) unless ``init_cfg`` is given."""
        if not self.init_cfg and not self._is_init:
            for conv in self.convs:
                identity_init_(conv, self.in_channels, self.identity_noise)
        super().init_weights()

    # --------------------------------------------------------------- forward
    def aggregate(self, x: Tensor) -> Tensor:
        """The module on one map: (N, C, H, W) -> (N, C, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'ContextModule: expected an (N, C={self.in_channels}, H, W) '
                f'map, got shape {tuple(x.shape)}')
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            x = conv(x)  # (N, c_{i+1}, H, W)
            if i < last:
                x = F.relu(x)  # truncation on all but the final 1×1
        return x

    def forward(self, inputs: Union[Tensor, Sequence[Tensor]]):
        """A tensor -> a tensor; a tuple of features -> the same tuple with
        ``inputs[in_index]`` replaced by its context-aggregated version."""
        if isinstance(inputs, Tensor):
            return self.aggregate(inputs)
        if not isinstance(inputs, (tuple, list)) or len(inputs) == 0:
            raise TypeError(
                f'ContextModule: expected a tensor or a non-empty tuple of '
                f'feature maps, got {type(inputs).__name__}')
        n = len(inputs)
        if not -n <= self.in_index < n:
            raise IndexError(
                f'ContextModule: in_index={self.in_index} is out of range for '
                f'{n} input feature map(s)')
        outs = list(inputs)
        outs[self.in_index] = self.aggregate(inputs[self.in_index])
        return tuple(outs)

    def extra_repr(self) -> str:
        return (f'C={self.in_channels}, widths={self.widths}, '
                f'dilations={self.dilations}, '
                f'receptive_field={self.receptive_field}')
