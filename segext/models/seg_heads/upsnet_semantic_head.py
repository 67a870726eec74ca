"""UPSNet's deformable semantic head (Xiong et al., CVPR 2019, Sec. 3.1).

One weight-shared sub-network of deformable 3x3 convolutions is applied to each
FPN level P2-P5; the P3-P5 outputs are upsampled to P2's size, concatenated and
classified by a 1x1 convolution into the 1/4-scale semantic logits ``X`` over
ALL classes (things and stuff).  ``X`` and the concatenated feature are what
the parameter-free panoptic head consumes (Sec. 3.2).

Labels follow mmdet's panoptic order: things ``0..T-1``, stuff ``T..T+S-1``,
``255`` ignored.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmcv.ops import RoIAlign
from mmdet.models.losses import CrossEntropyLoss, weight_reduce_loss
from mmdet.models.losses.cross_entropy_loss import cross_entropy
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet.models.seg_heads.base_semantic_head import BaseSemanticHead
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox2roi, get_box_tensor
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..layers import ChannelsLastConv2d, DeformConv2dWithOffset
from ..utils.labels import crop_and_resize_labels, stack_gt_sem_seg

__all__ = ['UPSNetSemanticHead']


class _UpsampledNLL(torch.autograd.Function):
    """Per-pixel cross-entropy of logits upsampled x4, in bands of rows.

    The value of ``F.cross_entropy(F.interpolate(x, size=(4h, 4w),
    mode='bilinear', align_corners=False), labels, reduction='none')``
    without the full-resolution logits, their log-softmax and their
    gradients (each 517 MB for 133 classes at 1216x800): the output rows of
    ``band_rows`` source rows are upsampled at a time from those rows plus
    one on either side -- the rows bilinear sampling reads -- so each band
    holds exactly the whole map's values.

    The forward keeps each pixel's log-sum-exp ``lse`` (one float per
    pixel). The backward recomputes each band's logits ``z`` and writes the
    gradient of ``nll = w_y (lse - z_y)`` directly: ``g · w_y · (exp(z -
    lse) - onehot(y))`` (0 on ignored pixels), then applies the adjoint of
    the upsampling and adds the bands' input gradients in band order
    (deterministic).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor,
                class_weight: Optional[Tensor], ignore_index: int,
                band_rows: int) -> Tensor:
        nll = logits.new_empty(labels.shape)  # (B, H, W)
        lse = logits.new_empty(labels.shape)
        for rows, out_rows, crop in _upsample_bands(logits.shape[2],
                                                    band_rows):
            nll[:, out_rows], lse[:, out_rows] = _band_nll(
                logits[:, :, rows], crop, labels[:, out_rows], class_weight,
                ignore_index)
        ctx.save_for_backward(logits, labels, lse)
        ctx.options = (class_weight, ignore_index)
        ctx.band_rows = band_rows
        return nll

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_nll: Tensor):
        logits, labels, lse = ctx.saved_tensors
        class_weight, ignore_index = ctx.options
        b, c, h, w = logits.shape
        # the gradient of the edge-padded source (B, C, h + 2, w + 2), see
        # _upsample_adjoint
        grad_padded = torch.empty(
            (b, c, h + 2, w + 2),
            dtype=logits.dtype,
            device=logits.device,
            memory_format=_memory_format(logits)).zero_()
        kernel = _upsample_adjoint_kernel(logits)
        for rows, out_rows, crop in _upsample_bands(h, ctx.band_rows):
            band = _band_logits(logits[:, :, rows], crop)  # (N, C)
            grad = _band_nll_grad(band, lse[:, out_rows].reshape(-1),
                                  labels[:, out_rows].reshape(-1),
                                  grad_nll[:, out_rows].reshape(-1),
                                  class_weight, ignore_index)
            # (B, C, R, W) with channels-last strides
            grad = grad.view(b, -1, 4 * w, c).permute(0, 3, 1, 2)
            s0 = out_rows.start // 4
            grad_padded[:, :, s0:s0 + grad.shape[2] // 4 + 2] += F.conv2d(
                grad, kernel, stride=4, padding=6, groups=c)
        return _unpad_adjoint(grad_padded), None, None, None, None


def _memory_format(tensor: Tensor) -> torch.memory_format:
    """channels-last for a channels-last (and not also plain contiguous)
    tensor, else the standard layout."""
    if tensor.is_contiguous(memory_format=torch.channels_last) \
            and not tensor.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _band_nll_grad(band: Tensor, lse: Tensor, labels: Tensor,
                   grad_nll: Tensor, class_weight: Optional[Tensor],
                   ignore_index: int) -> Tensor:
    """d(sum g · nll)/dz of one band, in place of ``band`` (N, C):
    ``g · w_y · (softmax(z) - onehot(y))``, zero on ignored pixels."""
    keep = labels != ignore_index
    target = labels.masked_fill(~keep, 0)
    scale = grad_nll * keep
    if class_weight is not None:
        scale = scale * class_weight[target]
    grad = band.sub_(lse[:, None]).exp_().mul_(scale[:, None])
    grad[torch.arange(len(target)), target] -= scale
    return grad


def _upsample_adjoint_kernel(like: Tensor) -> Tensor:
    """(C, 1, 8, 8) depthwise kernel of the adjoint of x4 bilinear
    upsampling without clamping (align_corners=False).

    Output row ``4k + r`` samples the source at ``k + r/4 - 3/8``, so source
    row ``j`` receives the output rows ``4j - 6 .. 4j + 1`` with weights
    ``(1, 3, 5, 7, 7, 5, 3, 1) / 8``: a stride-4 conv over the gradient
    padded by 6 on each side gives the gradient of the source padded by one
    row (column) on each side.
    """
    k = like.new_tensor([1, 3, 5, 7, 7, 5, 3, 1]) / 8
    return torch.outer(k, k).expand(like.shape[1], 1, 8, 8).contiguous()


def _unpad_adjoint(grad_padded: Tensor) -> Tensor:
    """Adjoint of edge-padding by one: (B, C, h+2, w+2) -> (B, C, h, w).

    torch clamps sampling positions below 0 (and the neighbour above the
    last row) to the edge, which is upsampling the edge-padded map without
    clamping; the padding's gradient goes back to the edge rows/columns.
    """
    g = grad_padded[:, :, 1:-1].clone()
    g[:, :, 0] += grad_padded[:, :, 0]
    g[:, :, -1] += grad_padded[:, :, -1]
    out = g[..., 1:-1].clone()
    out[..., 0] += g[..., 0]
    out[..., -1] += g[..., -1]
    return out


def _upsample_bands(height: int, band_rows: int):
    """Yield ``(source rows read, output rows, crop)`` per band of the x4
    upsampling of ``height`` rows; ``crop`` picks the band's output rows out
    of the upsampled source rows."""
    for s0 in range(0, height, band_rows):
        s1 = min(s0 + band_rows, height)
        lo, hi = max(s0 - 1, 0), min(s1 + 1, height)
        yield (slice(lo, hi), slice(4 * s0, 4 * s1),
               slice(4 * (s0 - lo), 4 * (s1 - lo)))


def _band_nll(rows: Tensor, crop: slice, labels: Tensor,
              class_weight: Optional[Tensor], ignore_index: int):
    """Per-pixel CE ``(B, R, W)`` of one band, and the pixels' log-sum-exp.

    ``rows`` ``(B, C, n, w)`` are upsampled x4 (bilinear; the scale is 1/4
    exactly, as for the whole map, so sampling positions and weights are the
    whole map's), cropped to the band's output rows ``crop`` and classified
    against ``labels`` ``(B, R, W)``. Channels-last, so that the softmax
    runs over contiguous classes.
    """
    band = _band_logits(rows, crop)  # (N, C)
    log_p = F.log_softmax(band, dim=1)
    nll = F.nll_loss(
        log_p, labels.reshape(-1), class_weight, reduction='none',
        ignore_index=ignore_index).view(labels.shape)
    lse = (band[:, 0] - log_p[:, 0]).view(labels.shape)
    return nll, lse


def _band_logits(rows: Tensor, crop: slice) -> Tensor:
    """(B, C, n, w) -> the band's upsampled logits (B*R*W, C)."""
    c, n, w = rows.shape[1:]
    up = F.interpolate(
        rows.contiguous(memory_format=torch.channels_last),
        size=(4 * n, 4 * w), mode='bilinear', align_corners=False)
    return up[:, :, crop].permute(0, 2, 3, 1).reshape(-1, c)


@MODELS.register_module()
class UPSNetSemanticHead(BaseSemanticHead):
    """Deformable-convolution semantic head of UPSNet.

    Sec. 3.1 of the paper: a sub-network of deformable 3x3 convolutions (each
    followed by ReLU, offsets initialised to zero), shared by P2-P5; its P3-P5
    outputs are bilinearly upsampled to P2's size and concatenated, and a 1x1
    convolution gives the semantic logits ``X`` over all classes at 1/4 scale.

    Losses: pixel-wise cross-entropy of ``X`` upsampled x4 against the
    full-resolution label map (``loss_seg``), and the RoI loss
    (``loss_roi_seg``) -- the same 1x1 classifier applied to RoIAlign crops of
    the concatenated feature on the non-crowd GT boxes, against the label map
    cropped to each box.  ``loss_roi_seg=None`` disables the latter
    (Cityscapes).

    Args:
        num_things_classes (int): Number of thing classes. Defaults to 80.
        num_stuff_classes (int): Number of stuff classes. Defaults to 53.
        in_channels (int): Channels of the FPN levels. Defaults to 256.
        feat_channels (Sequence[int]): Output channels of each layer of the
            shared sub-network, e.g. ``(256, 128, 128)`` for the paper's
            256->256->128->128 (COCO) or ``(128, 128)`` for Cityscapes.
        num_levels (int): How many FPN levels, from P2, feed the head.
            Defaults to 4 (P2-P5).
        conv_cfg (dict): Convolution of the sub-network. Defaults to
            ``dict(type='DCNv1')`` (deformable conv v1 with bias and a
            zero-initialised offset conv); ``None`` gives plain convs.
        norm_cfg (dict, optional): Norm after each conv, e.g.
            ``dict(type='GN', num_groups=32)``. The released models use none.
        act_cfg (dict): Activation after each conv. Defaults to ReLU.
        roi_extractor (dict): RoI extractor of the RoI loss, run on the single
            1/4-scale concatenated feature.
        loss_seg (dict): Semantic loss.
        loss_roi_seg (dict, optional): RoI semantic loss; ``None`` disables it.
        init_cfg (dict or list[dict], optional): Initialisation config. The
            default follows the authors: Kaiming-normal deformable weights,
            zero biases, N(0, 0.01) classifier; the offset convs stay zero.
    """

    def __init__(self,
                 num_things_classes: int = 80,
                 num_stuff_classes: int = 53,
                 in_channels: int = 256,
                 feat_channels: Sequence[int] = (256, 128, 128),
                 num_levels: int = 4,
                 conv_cfg: OptConfigType = dict(type='DCNv1'),
                 norm_cfg: OptConfigType = None,
                 act_cfg: ConfigType = dict(type='ReLU'),
                 roi_extractor: ConfigType = dict(
                     type='SingleRoIExtractor',
                     roi_layer=dict(
                         type='RoIAlign', output_size=28, sampling_ratio=0),
                     out_channels=512,
                     featmap_strides=[4]),
                 loss_seg: ConfigType = dict(
                     type='CrossEntropyLoss',
                     ignore_index=255,
                     avg_non_ignore=True,
                     loss_weight=0.2),
                 loss_roi_seg: OptConfigType = dict(
                     type='CrossEntropyLoss',
                     ignore_index=255,
                     loss_weight=0.04),
                 init_cfg: OptMultiConfig = [
                     dict(
                         type='Kaiming',
                         layer='DeformConv2dWithOffset',
                         mode='fan_in',
                         nonlinearity='relu',
                         distribution='normal',
                         bias=0),
                     dict(type='Normal', std=0.01,
                          override=dict(name='conv_logits'))
                 ]) -> None:
        super().__init__(
            num_classes=num_things_classes + num_stuff_classes,
            seg_rescale_factor=1 / 4,
            loss_seg=loss_seg,
            init_cfg=init_cfg)
        feat_channels = tuple(feat_channels)
        if len(feat_channels) < 1:
            raise ValueError('feat_channels must list at least one layer, '
                             f'got {feat_channels!r}')
        if not 1 <= num_levels <= 4:
            raise ValueError(
                f'num_levels must be in [1, 4] (P2..P5), got {num_levels}')
        self.num_things_classes = num_things_classes
        self.num_stuff_classes = num_stuff_classes
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.num_levels = num_levels
        self.seg_feat_channels = num_levels * feat_channels[-1]

        # The one sub-network shared by every FPN level.
        layers = []
        for i, out_channels in enumerate(feat_channels):
            layers.append(
                ConvModule(
                    in_channels if i == 0 else feat_channels[i - 1],
                    out_channels,
                    3,
                    padding=1,
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg))
        self.subnet = nn.Sequential(*layers)
        # channels-last on CPU when the sub-network is segext's deformable
        # conv (see _run_subnet); the classifier then sees a channels-last
        # feature, hence ChannelsLastConv2d (nn.Conv2d's parameters)
        self._channels_last_subnet = any(
            isinstance(m, DeformConv2dWithOffset)
            for m in self.subnet.modules())
        self.conv_logits = ChannelsLastConv2d(self.seg_feat_channels,
                                              self.num_classes, 1)

        if loss_roi_seg is not None:
            if roi_extractor['out_channels'] != self.seg_feat_channels:
                raise ValueError(
                    'roi_extractor.out_channels must equal the concatenated '
                    f'feature width num_levels * feat_channels[-1] = '
                    f'{self.seg_feat_channels}, got '
                    f'{roi_extractor["out_channels"]}')
            self.roi_extractor = MODELS.build(roi_extractor)
            self.loss_roi_seg = MODELS.build(loss_roi_seg)
        else:
            self.roi_extractor = None
            self.loss_roi_seg = None

    @property
    def with_roi_loss(self) -> bool:
        """bool: whether the RoI semantic loss is computed."""
        return self.loss_roi_seg is not None

    def forward(self, x: Tuple[Tensor]) -> Dict[str, Tensor]:
        """Semantic logits ``X`` from FPN levels P2-P5 (Sec. 3.1).

        Args:
            x (tuple[Tensor]): FPN outputs, ``x[0]`` is P2 at stride 4.

        Returns:
            dict: ``seg_preds`` -- the logits ``X`` ``(B, T+S, H/4, W/4)``;
            ``seg_feats`` -- the concatenated feature ``(B, 512, H/4, W/4)``,
            channels-last on CPU (see :meth:`_run_subnet`); ``seg_preds`` in
            the standard layout (the panoptic head and inference work per
            class map: on channels-last logits inference took 18 % longer).
        """
        if len(x) < self.num_levels:
            raise ValueError(f'{type(self).__name__} uses {self.num_levels} '
                             f'FPN levels but got {len(x)}')
        # shared deformable sub-network on every level: (B, 128, H_l, W_l)
        level_feats = [
            self._run_subnet(x[i]) for i in range(self.num_levels)
        ]
        # upsample P3..P5 to P2's size and concatenate: (B, 512, H/4, W/4)
        size = level_feats[0].shape[-2:]
        seg_feats = torch.cat([level_feats[0]] + [
            F.interpolate(f, size=size, mode='bilinear', align_corners=False)
            for f in level_feats[1:]
        ], dim=1)
        # X: (B, T+S, H/4, W/4) in the standard layout
        seg_preds = self.conv_logits(seg_feats).contiguous()
        return dict(seg_preds=seg_preds, seg_feats=seg_feats)

    def _run_subnet(self, feat: Tensor) -> Tensor:
        """The shared sub-network on one level, (B, C, H, W) in and out.

        On CPU, with deformable layers, it runs in channels-last memory:
        segext's deformable conv reads its input and writes its output as
        rows of pixels, so the layers then pass tensors on without layout
        copies, and the result stays channels-last through the upsampling,
        the concatenation and the 1x1 classifier (issue 13: 12 % of UPSNet's
        dense training step at 1216x800 on 2 threads, against converting
        back here). A sub-network of plain convs (``conv_cfg=None``) keeps
        the standard layout: oneDNN's channels-last weight gradient is
        several times slower there (docs/deform_conv.md, "Fourth round").
        Elsewhere (CUDA: mmcv's op) the standard layout.
        """
        if feat.device.type != 'cpu' or not self._channels_last_subnet:
            return self.subnet(feat)
        return self.subnet(feat.contiguous(memory_format=torch.channels_last))

    def loss(self, x: Tuple[Tensor],
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Forward, then :meth:`loss_by_feat`."""
        return self.loss_by_feat(self(x), batch_data_samples)

    def loss_by_feat(self, seg_outs: Dict[str, Tensor],
                     batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Semantic losses given the outputs of :meth:`forward`.

        Args:
            seg_outs (dict): ``seg_preds`` and ``seg_feats`` of ``forward``.
            batch_data_samples (list[DetDataSample]): with ``gt_sem_seg`` at
                input resolution and ``gt_instances`` (non-crowd things).

        Returns:
            dict: ``loss_seg`` and, when enabled, ``loss_roi_seg``.
        """
        seg_preds, seg_feats = seg_outs['seg_preds'], seg_outs['seg_feats']
        gt_segs = stack_gt_sem_seg(batch_data_samples)  # (B, H, W)

        losses = dict(loss_seg=self._semantic_loss(seg_preds, gt_segs))
        if self.with_roi_loss:
            losses['loss_roi_seg'] = self._roi_loss(seg_preds, seg_feats,
                                                    gt_segs,
                                                    batch_data_samples)
        return losses

    def _semantic_loss(self, seg_preds: Tensor, gt_segs: Tensor) -> Tensor:
        """L_sem: X upsampled (bilinear) to the full-resolution label map.

        On CPU, with mmdet's softmax ``CrossEntropyLoss`` and labels exactly
        4x the logits' size, the per-pixel losses come from
        :class:`_UpsampledNLL` (no full-resolution logits in memory) and are
        reduced as mmdet's ``cross_entropy`` does: the same value. Elsewhere
        (CUDA) the plain upsample + loss.
        """
        loss = self.loss_seg
        if not (seg_preds.device.type == 'cpu'
                and type(loss) is CrossEntropyLoss
                and loss.cls_criterion is cross_entropy and
                tuple(gt_segs.shape[-2:]) == tuple(
                    4 * s for s in seg_preds.shape[-2:])):
            seg_logits = F.interpolate(
                seg_preds,
                size=gt_segs.shape[-2:],
                mode='bilinear',
                align_corners=False)
            return loss(seg_logits, gt_segs)
        ignore_index = -100 if loss.ignore_index is None \
            else loss.ignore_index
        class_weight = None if loss.class_weight is None \
            else seg_preds.new_tensor(loss.class_weight)
        # source rows per band: ~16 MiB of upsampled logits
        row_bytes = 16 * seg_preds[:, :, 0].numel() * seg_preds.element_size()
        band_rows = max(1, 2**24 // row_bytes - 2)
        nll = _UpsampledNLL.apply(seg_preds, gt_segs, class_weight,
                                  ignore_index, band_rows)  # (B, H, W)
        avg_factor = None
        if loss.avg_non_ignore and loss.reduction == 'mean':
            avg_factor = gt_segs.numel() - (gt_segs
                                            == ignore_index).sum().item()
        return loss.loss_weight * weight_reduce_loss(
            nll, reduction=loss.reduction, avg_factor=avg_factor)

    def _roi_loss(self, seg_preds: Tensor, seg_feats: Tensor, gt_segs: Tensor,
                  batch_data_samples: SampleList) -> Tensor:
        """L_sem_roi: the 1x1 classifier on 28x28 RoIAlign crops of the
        concatenated feature on the GT boxes, against the cropped label map.

        RoIAlign (average of bilinear samples) is linear and the classifier
        a 1x1 conv, so the crops of the classifier's bias-free output
        ``X - b`` plus ``b`` are the classified crops: computed that way
        (T+S channels aligned instead of 512, no conv on the crops) when the
        extractor is mmdet's single-level RoIAlign.
        """
        rois = bbox2roi([
            get_box_tensor(sample.gt_instances.bboxes)
            for sample in batch_data_samples
        ]).to(seg_feats.device)  # (R, 5)
        if rois.shape[0] == 0:
            # no things in the batch: a zero that keeps the graph connected
            return seg_feats.sum() * 0 + self.conv_logits.weight.sum() * 0
        # mmcv's RoIAlign reads its input as NCHW whatever its strides (it
        # does not call .contiguous()): channels-last maps (the CPU head's
        # seg_feats, see _run_subnet) are converted first
        if self._roi_align_is_linear():
            bias = self.conv_logits.bias
            if bias is None:
                roi_logits = self.roi_extractor([seg_preds.contiguous()],
                                                rois)
            else:
                bias = bias.view(-1, 1, 1)
                roi_logits = self.roi_extractor(
                    [(seg_preds - bias).contiguous()], rois) + bias
        else:
            # (R, 512, 28, 28)
            roi_feats = self.roi_extractor([seg_feats.contiguous()], rois)
            roi_logits = self.conv_logits(roi_feats)  # (R, T+S, 28, 28)
        roi_targets = crop_and_resize_labels(gt_segs, rois,
                                             roi_logits.shape[-1])
        return self.loss_roi_seg(roi_logits, roi_targets)

    def _roi_align_is_linear(self) -> bool:
        """Is the RoI extractor mmdet's single-level average RoIAlign?"""
        extractor = self.roi_extractor
        return (type(extractor) is SingleRoIExtractor
                and len(extractor.roi_layers) == 1
                and type(extractor.roi_layers[0]) is RoIAlign
                and extractor.roi_layers[0].pool_mode == 'avg')

    def predict(self,
                x: Tuple[Tensor],
                batch_img_metas: List[dict],
                rescale: bool = False) -> List[Tensor]:
        """Per-image semantic logits ``(T+S, H, W)``: at the original image
        size when ``rescale``, else cropped to the (unpadded) input size."""
        seg_preds = super().predict(x, batch_img_metas, rescale)
        if not rescale:
            seg_preds = [
                seg[:, :meta['img_shape'][0], :meta['img_shape'][1]]
                for seg, meta in zip(seg_preds, batch_img_metas)
            ]
        return seg_preds
