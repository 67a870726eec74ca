"""The DRN authors' segmentation head, as an mmseg decode head.

Yu, Koltun, Funkhouser, "Dilated Residual Networks", CVPR 2017 (Sec. 5,
semantic segmentation) and the authors' segment.py (``DRNSeg``):
the last level of the backbone (output stride 8) -> a 1x1 classifier -> x8
upsampling by a FIXED transposed convolution initialised to bilinear
interpolation (kernel 16, stride 8, padding 4, one group per class), not
trained.
"""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from mmseg.utils import SampleList
from torch import Tensor

__all__ = ['DRNHead', 'bilinear_upsample_kernel']


def bilinear_upsample_kernel(kernel_size: int) -> Tensor:
    """The (k, k) bilinear kernel the DRN authors load into their up-conv.

    ``w[i, j] = (1 - |i / f - c|) * (1 - |j / f - c|)`` with
    ``f = ceil(k / 2)`` and ``c = (2f - 1 - f % 2) / (2f)``: with stride
    ``f`` it interpolates bilinearly with half-pixel centres (mmseg's
    ``align_corners=False``).
    """
    f = math.ceil(kernel_size / 2)
    c = (2 * f - 1 - f % 2) / (2. * f)
    w1d = 1 - (torch.arange(kernel_size, dtype=torch.float64) / f - c).abs()
    return torch.outer(w1d, w1d).float()


@MODELS.register_module()
class DRNHead(BaseDecodeHead):
    """1x1 classifier + fixed bilinear x8 transposed-conv upsampling.

    The DRN authors' segmentation model (``DRNSeg``) on top of
    :class:`~segext.models.backbones.DRN`.  ``conv_seg`` (mmseg's classifier
    slot) is the authors' 1x1 conv from the backbone's last level to the
    classes (no intermediate conv, so ``channels == in_channels``); the
    upsampling is a per-class ``conv_transpose2d`` with the authors' bilinear
    kernel (kernel ``2 * upsample_ratio``, stride ``upsample_ratio``,
    padding ``upsample_ratio / 2``) held in a non-persistent buffer: it has no
    gradient, no optimizer state, no checkpoint entry, and no ``init_cfg`` can
    reinitialise it.

    The head outputs logits at ``upsample_ratio`` times the feature size,
    i.e. the input size when it is divisible by 8.  For other sizes the
    backbone rounds up (``ceil``), and the logits are cropped (top-left
    aligned, where feature pixel ``i`` sits) to the label size in
    :meth:`loss_by_feat` and to the batch input size in
    :meth:`predict_by_feat`, before mmseg's resize, which is then the
    identity.

    Args:
        upsample_ratio (int): Even upsampling factor, the backbone's output
            stride. Default: 8.
        **kwargs: :class:`BaseDecodeHead` arguments. ``channels`` defaults to
            ``in_channels`` (and must equal it), ``dropout_ratio`` to 0 (the
            authors use no dropout), ``init_cfg`` to the authors' classifier
            init (normal, std ``sqrt(2 / num_classes)``, i.e. Kaiming
            fan_out; zero bias).
    """

    def __init__(self, upsample_ratio: int = 8, **kwargs):
        in_channels = kwargs.get('in_channels')
        kwargs.setdefault('channels', in_channels)
        if kwargs['channels'] != in_channels:
            raise ValueError(
                f'DRNHead: channels={kwargs["channels"]!r} must equal '
                f'in_channels={in_channels!r} (the classifier reads the '
                'backbone feature directly); omit channels')
        if (not isinstance(upsample_ratio, int) or upsample_ratio < 2
                or upsample_ratio % 2):
            raise ValueError(f'DRNHead: upsample_ratio={upsample_ratio!r} '
                             'must be an even int >= 2 (8 for DRN)')
        kwargs.setdefault('dropout_ratio', 0.)
        kwargs.setdefault(
            'init_cfg',
            dict(type='Kaiming', mode='fan_out', nonlinearity='relu',
                 distribution='normal', bias=0,
                 override=dict(name='conv_seg')))
        if kwargs.get('input_transform') is not None:
            raise ValueError(
                'DRNHead: reads one level (in_index), got input_transform='
                f'{kwargs["input_transform"]!r}')
        super().__init__(**kwargs)
        self.upsample_ratio = upsample_ratio
        kernel = bilinear_upsample_kernel(2 * upsample_ratio)
        # (out_channels, 1, 2r, 2r): one bilinear filter per class (groups)
        self.register_buffer(
            'up_weight',
            kernel.expand(self.out_channels, 1, -1, -1).contiguous(),
            persistent=False)

    def upsample(self, x: Tensor) -> Tensor:
        """(N, C, h, w) -> (N, C, r*h, r*w), fixed bilinear."""
        r = self.upsample_ratio
        return F.conv_transpose2d(
            x, self.up_weight.to(x.dtype), stride=r, padding=r // 2,
            groups=self.out_channels)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        x = self._transform_inputs(inputs)  # (N, in_channels, H/8, W/8)
        x = self.cls_seg(x)  # (N, num_classes, H/8, W/8)
        return self.upsample(x)  # (N, num_classes, H, W)

    def _crop_to(self, seg_logits: Tensor, size: Sequence[int]) -> Tensor:
        """Drop the < ``upsample_ratio`` rows/cols of a rounded-up input."""
        h, w = int(size[0]), int(size[1])
        H, W = seg_logits.shape[-2:]
        r = self.upsample_ratio
        if h <= H < h + r and w <= W < w + r:
            return seg_logits[..., :h, :w]
        return seg_logits  # not a rounding difference: mmseg's resize

    def loss_by_feat(self, seg_logits: Tensor,
                     batch_data_samples: SampleList) -> dict:
        size = batch_data_samples[0].gt_sem_seg.data.shape[-2:]
        return super().loss_by_feat(
            self._crop_to(seg_logits, size), batch_data_samples)

    def predict_by_feat(self, seg_logits: Tensor,
                        batch_img_metas: List[dict]) -> Tensor:
        meta = batch_img_metas[0]
        if isinstance(meta['img_shape'], torch.Size):  # slide inference
            size: Tuple[int, ...] = meta['img_shape']
        else:
            size = meta.get('pad_shape', meta['img_shape'])[:2]
        return super().predict_by_feat(
            self._crop_to(seg_logits, size), batch_img_metas)
