"""UPSNet's deformable semantic head (Xiong et al., CVPR 2019, Sec. 3.1).

One weight-shared sub-network of deformable 3x3 convolutions is applied to each
FPN level P2-P5; the P3-P5 outputs are upsampled to P2's size, concatenated and
classified by a 1x1 convolution into the 1/4-scale semantic logits ``X`` over
ALL classes (things and stuff).  ``X`` is what the parameter-free panoptic
head consumes (Sec. 3.2).

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

from ...ops.roi_align_cpu import is_average_roi_align, roi_align_cpu
from ...ops.upsampled_nll import upsampled_nll
from ..layers import DeformConv2dWithOffset
from ..utils.labels import crop_and_resize_labels, stack_gt_sem_seg

__all__ = ['UPSNetSemanticHead']


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
        # conv (see _run_subnet)
        self._channels_last_subnet = any(
            isinstance(m, DeformConv2dWithOffset)
            for m in self.subnet.modules())
        # the 1x1 classifier of the concatenated feature; applied per level
        # by _classify (its weight, sliced), as such by the literal RoI loss
        self.conv_logits = nn.Conv2d(self.seg_feat_channels, self.num_classes,
                                     1)

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
            dict: ``seg_preds`` -- the logits ``X`` ``(B, T+S, H/4, W/4)``,
            in the standard layout (the panoptic head and inference work per
            class map: on channels-last logits inference took 18 % longer);
            ``level_feats`` -- the sub-network's output on each level,
            ``(B, 128, H_l, W_l)`` (channels-last on CPU, see
            :meth:`_run_subnet`), from which :meth:`concat_feats` builds the
            512-ch feature.
        """
        if len(x) < self.num_levels:
            raise ValueError(f'{type(self).__name__} uses {self.num_levels} '
                             f'FPN levels but got {len(x)}')
        # shared deformable sub-network on every level: (B, 128, H_l, W_l)
        level_feats = [
            self._run_subnet(x[i]) for i in range(self.num_levels)
        ]
        return dict(seg_preds=self._classify(level_feats),
                    level_feats=level_feats)

    def _classify(self, level_feats: List[Tensor]) -> Tensor:
        """X = 1x1 classifier of the concatenation of P2 and the upsampled
        P3-P5 features (Sec. 3.1), computed per level before upsampling.

        With the classifier's weight split by level, ``W = [W_2 .. W_5]``,
        ``X = b + sum_l W_l up(F_l)``. Bilinear upsampling mixes pixels
        within each channel and ``W_l`` mixes channels within each pixel,
        so they commute: ``X = b + sum_l up(W_l F_l)`` -- the same logits
        (to float rounding, tested) without the (B, 512, H/4, W/4) feature
        or its gradient, with 133 instead of 512 channels classified at
        full 1/4 resolution and (T+S)-channel maps upsampled in the
        standard layout instead of 128-channel channels-last ones (issue
        13; docs/upsnet.md, "Eighth round").
        """
        size = level_feats[0].shape[-2:]
        channels = self.feat_channels[-1]  # per level
        weight = self.conv_logits.weight.flatten(1)  # (T+S, 512)
        seg_preds = None
        for i, feat in enumerate(level_feats):
            batch, _, height, width = feat.shape
            # (B, T+S, h*w) = (B, T+S, 128) @ (B, 128, h*w): a standard
            # layout result whatever feat's (channels-last reads as the
            # transposed operand); the weight expanded per image so that
            # FLOP counters see the batch
            logits = torch.matmul(
                weight[:, i * channels:(i + 1) * channels].expand(
                    batch, -1, -1),
                feat.flatten(2)).view(batch, -1, height, width)
            if i > 0:
                logits = F.interpolate(
                    logits, size=size, mode='bilinear', align_corners=False)
            seg_preds = logits if seg_preds is None else \
                seg_preds.add_(logits)
        if self.conv_logits.bias is not None:
            seg_preds = seg_preds.add_(self.conv_logits.bias.view(1, -1, 1, 1))
        return seg_preds  # (B, T+S, H/4, W/4)

    def concat_feats(self, level_feats: List[Tensor]) -> Tensor:
        """The concatenated feature (B, 512, H/4, W/4): P2's and the P3-P5
        features bilinearly upsampled to P2's size (Sec. 3.1), in the
        standard layout."""
        size = level_feats[0].shape[-2:]
        return torch.cat([level_feats[0].contiguous()] + [
            F.interpolate(f.contiguous(), size=size, mode='bilinear',
                          align_corners=False) for f in level_feats[1:]
        ], dim=1)

    def _run_subnet(self, feat: Tensor) -> Tensor:
        """The shared sub-network on one level, (B, C, H, W) in and out.

        On CPU, with deformable layers, it runs in channels-last memory:
        segext's deformable conv reads its input and writes its output as
        rows of pixels, so the layers then pass tensors on without layout
        copies, and :meth:`_classify` reads the result's rows as they are
        (issue 13: converting back here took 12 % of UPSNet's dense
        training step at 1216x800 on 2 threads). A sub-network of plain
        convs (``conv_cfg=None``) keeps the standard layout: oneDNN's
        channels-last weight gradient is several times slower there
        (docs/deform_conv.md, "Fourth round").
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
            seg_outs (dict): ``seg_preds`` and ``level_feats`` of
                ``forward`` (``level_feats`` used only by an RoI extractor
                other than mmdet's single-level RoIAlign).
            batch_data_samples (list[DetDataSample]): with ``gt_sem_seg`` at
                input resolution and ``gt_instances`` (non-crowd things).

        Returns:
            dict: ``loss_seg`` and, when enabled, ``loss_roi_seg``.
        """
        seg_preds = seg_outs['seg_preds']
        gt_segs = stack_gt_sem_seg(batch_data_samples)  # (B, H, W)

        losses = dict(loss_seg=self._semantic_loss(seg_preds, gt_segs))
        if self.with_roi_loss:
            losses['loss_roi_seg'] = self._roi_loss(
                seg_preds, seg_outs.get('level_feats'), gt_segs,
                batch_data_samples)
        return losses

    def _semantic_loss(self, seg_preds: Tensor, gt_segs: Tensor) -> Tensor:
        """L_sem: X upsampled (bilinear) to the full-resolution label map.

        On CPU, with mmdet's softmax ``CrossEntropyLoss`` and labels exactly
        4x the logits' size, the per-pixel losses come from
        :func:`~segext.ops.upsampled_nll.upsampled_nll` (no full-resolution
        logits in memory) and are
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
        nll = upsampled_nll(seg_preds, gt_segs, class_weight,
                            ignore_index)  # (B, H, W)
        avg_factor = None
        if loss.avg_non_ignore and loss.reduction == 'mean':
            avg_factor = gt_segs.numel() - (gt_segs
                                            == ignore_index).sum().item()
        return loss.loss_weight * weight_reduce_loss(
            nll, reduction=loss.reduction, avg_factor=avg_factor)

    def _roi_loss(self, seg_preds: Tensor,
                  level_feats: Optional[List[Tensor]], gt_segs: Tensor,
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
        ]).to(seg_preds.device)  # (R, 5)
        if rois.shape[0] == 0:
            # no things in the batch: a zero that keeps the graph connected
            return seg_preds.sum() * 0 + self.conv_logits.weight.sum() * 0
        if self._roi_align_is_linear():
            bias = self.conv_logits.bias
            if bias is None:
                roi_logits = self._align_linear(seg_preds, rois)
            else:
                bias = bias.view(-1, 1, 1)
                roi_logits = self._align_linear(seg_preds - bias,
                                                rois) + bias
        else:
            if level_feats is None:
                raise ValueError(
                    f'{type(self.roi_extractor).__name__} RoI loss needs '
                    "seg_outs['level_feats'] from forward()")
            # (R, 512, 28, 28)
            roi_feats = self.roi_extractor([self.concat_feats(level_feats)],
                                           rois)
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

    def _align_linear(self, feat: Tensor, rois: Tensor) -> Tensor:
        """The extractor's RoIAlign crops ``(R, C, 28, 28)`` of ``feat``.

        On CPU, with mmcv's own kernel configured, the same crops from
        :func:`~segext.ops.roi_align_cpu.roi_align_cpu` (two matrix
        products per RoI; mmcv's CPU kernel runs one thread through every
        channel and bin: issue 13, docs/upsnet.md, "Ninth round").
        Elsewhere (CUDA) the extractor itself.
        """
        layer = self.roi_extractor.roi_layers[0]
        if feat.device.type == 'cpu' and is_average_roi_align(layer):
            return roi_align_cpu(feat, rois.type_as(feat), layer.output_size,
                                 layer.spatial_scale, layer.sampling_ratio,
                                 layer.aligned)
        # mmcv's RoIAlign reads its input as NCHW whatever its strides (it
        # does not call .contiguous()): maps are handed over contiguous
        return self.roi_extractor([feat.contiguous()], rois)

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
