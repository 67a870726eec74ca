"""The paper's arrangement of the dilated context module as a decode head.

Yu & Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions", ICLR
2016: the front-end ends in a 1×1 classifier (``final``); the context module
takes that class-score map (C = number of classes, Sec. 3) and its output is
upsampled ×8 to the input resolution.  The authors' training nets upsample
with a fixed, per-class bilinear transposed convolution (kernel 16, stride 8,
padding 4, not trained; ``make_upsample`` in their ``network.py`` and the
``ctx_upsample`` layer of their Cityscapes model), i.e. exactly
:class:`~segext.models.decode_heads.DRNHead`'s upsampling, which this head
inherits rather than repeats.  (Their VOC deploy script instead zooms the
stride-8 probabilities bilinearly on the CPU -- the same interpolation.)
"""
from __future__ import annotations

from typing import Optional, Sequence

from mmseg.registry import MODELS
from torch import Tensor

from ..necks.context_module import ContextModule
from .drn_head import DRNHead

__all__ = ['ContextHead']


@MODELS.register_module()
class ContextHead(DRNHead):
    """Class scores -> dilated context module -> fixed bilinear ×8.

    ``forward`` reads as the paper's pipeline::

        scores = conv_seg(dropout(x))      # front-end 'final', (N, K, h, w)
        scores = context(scores)           # Table 1 module, C = K
        return upsample(scores)            # fixed bilinear, (N, K, 8h, 8w)

    The context module is identity-initialised (Sec. 3): it passes its input
    through unchanged *if the input is non-negative* -- the truncation zeroes
    negative scores, and a class whose score is negative at every pixel gets
    no gradient through it.  The paper meets this premise with a trained
    front-end: train it first, then the module on top (``load_from``, as
    the dilation configs do).  ``score_bias`` (1.0) starts every class score
    of an untrained classifier positive -- the softmax ignores a constant
    added to all scores, so for the classifier alone this changes nothing --
    and at step 0 the head then computes exactly what :class:`DRNHead`
    computes with the same classifier (the N(0, 1e-3²) weights move a score
    by a few 1e-2 on O(1) features).  A loaded checkpoint overrides it.
    That alone does not make joint training from scratch work: on the
    synthetic DRN toy the thing classes' scores still turn negative at
    their own pixels early on and those classes end at IoU 0 (see
    ``docs/context_module.md``).

    Args:
        context_cfg (dict, optional): :class:`ContextModule` arguments other
            than ``in_channels`` (which is ``num_classes``): ``arch``
            (``'basic'``/``'large'``), ``dilations`` (``'voc'``,
            ``'cityscapes'`` or a list), ``identity_noise``.  Default: the
            basic module with Table 1's dilations.
        score_bias (float): Initial bias of every class score (see above).
            Default: 1.0.
        **kwargs: :class:`DRNHead` arguments (``upsample_ratio``,
            ``in_channels``, ``num_classes``, ``dropout_ratio``, ...).
            ``init_cfg`` defaults to the authors' classifier weights, normal
            with std 1e-3 (``final`` in their ``network.py``), and the bias
            ``score_bias``.
    """

    def __init__(self,
                 context_cfg: Optional[dict] = None,
                 score_bias: float = 1.0,
                 **kwargs):
        kwargs.setdefault(
            'init_cfg',
            dict(type='Normal', std=1e-3, bias=score_bias,
                 override=dict(name='conv_seg')))
        super().__init__(**kwargs)
        context_cfg = dict(context_cfg or {})
        for key in ('type', 'in_channels', 'in_index'):
            if key in context_cfg:
                raise ValueError(
                    f'ContextHead: context_cfg must not set {key!r} (the '
                    f'module always runs on the {self.out_channels}-channel '
                    f'class-score map); got context_cfg={context_cfg!r}')
        self.context = ContextModule(
            in_channels=self.out_channels, **context_cfg)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        x = self._transform_inputs(inputs)  # (N, in_channels, H/8, W/8)
        scores = self.cls_seg(x)  # (N, K, H/8, W/8)
        scores = self.context(scores)  # (N, K, H/8, W/8)
        return self.upsample(scores)  # (N, K, H, W)
