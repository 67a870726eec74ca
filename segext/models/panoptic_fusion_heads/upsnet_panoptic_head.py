"""UPSNet's parameter-free panoptic head (Xiong et al., CVPR 2019, Sec. 3.2).

Given the semantic logits ``X`` and, for N instances with boxes ``B_i``,
classes ``C_i`` and raw 28x28 mask logits ``Y_i``, the panoptic logits are::

    X_mask_i = X_thing[C_i] inside B_i, 0 outside                  (Eq. 1)
    Y_mask_i = Y_i bilinearly resized to B_i and pasted into zeros
    Z_i      = X_mask_i + Y_mask_i
    Z_unk    = max_c X_thing[c] - max_i X_mask_i                     (Eq. 2)
    Z        = [X_stuff, Z_1 .. Z_N, Z_unk]      (S + N + 1, H, W)

and each pixel takes the argmax: a stuff class, an instance or *unknown*.
Training uses the GT boxes with ~70% of them kept at random; the pixels of the
dropped ones become *unknown* (Sec. 3.3).  At test time *unknown* is VOID.

Labels follow mmdet's panoptic order -- things ``0..T-1``, stuff
``T..T+S-1`` -- and the output follows mmdet's panoptic convention:
``label + instance_id * INSTANCE_OFFSET``, VOID = ``num_classes``.
"""
from typing import Dict, List, Tuple

import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.models.seg_heads.panoptic_fusion_heads import \
    BasePanopticFusionHead
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import InstanceList, OptConfigType, OptMultiConfig
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from ..seg_heads.upsnet_semantic_head import (resize_labels_nearest,
                                              stack_gt_sem_seg)

__all__ = [
    'UPSNetPanopticHead', 'box_extents', 'paste_mask_crops', 'paste_mask_logits'
]

IGNORE_INDEX = 255


def box_extents(boxes: Tensor, size: Tuple[int, int]) -> Tensor:
    """Integer pixel extents ``(x0, y0, x1, y1)`` (end exclusive) of boxes.

    A pixel ``[j, j + 1)`` belongs to a box when it overlaps it, so every box
    covers at least one pixel; extents are clipped to ``size`` = (H, W).
    """
    h, w = size
    x0 = boxes[:, 0].floor().clamp(0, w - 1)
    y0 = boxes[:, 1].floor().clamp(0, h - 1)
    x1 = torch.maximum(boxes[:, 2].ceil(), x0 + 1).clamp(max=w)
    y1 = torch.maximum(boxes[:, 3].ceil(), y0 + 1).clamp(max=h)
    return torch.stack([x0, y0, x1, y1], dim=1).long()


def _bilinear_weights(starts: Tensor, ends: Tensor, extent_lo: Tensor,
                      extent_hi: Tensor, in_size: int,
                      out_size: int) -> Tensor:
    """``(N, out_size, in_size)`` matrices resizing a length-``in_size``
    signal onto ``[starts, ends)`` of an ``out_size`` axis (bilinear,
    ``align_corners=False``, edge-clamped), zero outside ``[lo, hi)``."""
    centres = torch.arange(out_size, device=starts.device) + 0.5  # (out, )
    length = (ends - starts).clamp(min=1e-6)[:, None]
    src = ((centres[None] - starts[:, None]) / length * in_size - 0.5)
    src = src.clamp(0, in_size - 1)  # (N, out)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=in_size - 1)
    frac = src - lo
    weights = starts.new_zeros(starts.shape[0], out_size, in_size)
    weights.scatter_add_(2, lo[..., None], (1 - frac)[..., None])
    weights.scatter_add_(2, hi[..., None], frac[..., None])
    pixel = torch.arange(out_size, device=starts.device)[None]
    inside = (pixel >= extent_lo[:, None]) & (pixel < extent_hi[:, None])
    return weights * inside[..., None]


def paste_mask_logits(mask_logits: Tensor, boxes: Tensor,
                      size: Tuple[int, int]) -> Tensor:
    """Paste raw ``(N, M, M)`` mask logits into zero ``(N, H, W)`` maps.

    Each ``Y_i`` is bilinearly resized to its box (as ``F.interpolate`` with
    ``align_corners=False`` would) and is zero outside :func:`box_extents`.
    Bilinear resizing is separable, so the paste is two batched matmuls
    ``Wy @ Y @ Wx^T`` -- no per-instance loop, no ``(N, H, W, 2)`` sampling
    grid.  mmdet's ``_do_paste_mask`` samples with zero padding, which fades
    the border of the mask towards logit 0; raw logits enter a sum here, so
    the border is edge-clamped instead.
    """
    _, w_y, w_x = _paste_weights(mask_logits, boxes, size)
    return w_y @ mask_logits @ w_x.transpose(1, 2)  # (N, H, W)


def _paste_weights(mask_logits: Tensor, boxes: Tensor,
                   size: Tuple[int, int]) -> Tuple[Tensor, Tensor, Tensor]:
    """Box extents ``(N, 4)`` and the separable resize matrices ``Wy``
    ``(N, H, M)`` and ``Wx`` ``(N, W, M)`` of :func:`paste_mask_logits`."""
    _, m_h, m_w = mask_logits.shape
    h, w = size
    boxes = boxes.to(mask_logits.dtype)
    ext = box_extents(boxes, size)
    w_y = _bilinear_weights(boxes[:, 1], boxes[:, 3], ext[:, 1], ext[:, 3],
                            m_h, h).to(mask_logits.dtype)  # (N, H, M)
    w_x = _bilinear_weights(boxes[:, 0], boxes[:, 2], ext[:, 0], ext[:, 2],
                            m_w, w).to(mask_logits.dtype)  # (N, W, M)
    return ext, w_y, w_x


def paste_mask_crops(mask_logits: Tensor, boxes: Tensor,
                     size: Tuple[int, int]) -> Tuple[Tensor, List[Tensor]]:
    """:func:`paste_mask_logits` without the zeros: each ``Y_mask_i`` only
    inside its :func:`box_extents`.

    Returns:
        tuple: extents ``(N, 4)`` and N crops, crop ``i`` of shape
        ``(y1 - y0, x1 - x0)`` -- ``paste_mask_logits(...)[i, y0:y1, x0:x1]``.
        Memory and time scale with the boxes' areas, not ``N * H * W``.
    """
    ext, w_y, w_x = _paste_weights(mask_logits, boxes, size)
    crops = [
        w_y[i, y0:y1] @ mask_logits[i] @ w_x[i, x0:x1].T  # (h_i, w_i)
        for i, (x0, y0, x1, y1) in enumerate(ext.tolist())
    ]
    return ext, crops


def _first_box_not_covering(extents: Tensor, size: Tuple[int, int]) -> Tensor:
    """``(H, W)``: the smallest ``i`` whose box does not contain the pixel,
    ``N`` if every box does.

    The pixels inside boxes ``0..k`` form a rectangle (an intersection of
    rectangles), so this is N rectangle fills at most -- no ``(N, H, W)``.
    """
    first = extents.new_zeros(size)
    x0, y0, x1, y1 = 0, 0, size[1], size[0]
    for k, (bx0, by0, bx1, by1) in enumerate(extents.tolist()):
        x0, y0, x1, y1 = max(x0, bx0), max(y0, by0), min(x1, bx1), min(
            y1, by1)
        if x0 >= x1 or y0 >= y1:
            break
        first[y0:y1, x0:x1] = k + 1
    return first


def channel_max(x: Tensor) -> Tuple[Tensor, Tensor]:
    """``x.max(0)`` of a ``(C, H, W)`` map: values and first max indices.

    On CPU, ``torch.max(dim=0)`` with indices is slow (measured on
    53x800x1216: 143 ms, where ``amax`` takes 14 ms); a running max over the
    channels, one vectorised pass each, gives the same indices (the first
    maximum: only a strictly larger value moves it) in ~50 ms.  Other devices
    keep ``torch.max``.  (A NaN logit does not propagate here.)
    """
    if x.device.type != 'cpu' or x.shape[0] == 0:
        return x.max(0)
    best = x[0].clone()
    index = torch.zeros(x.shape[1:], dtype=torch.int32)  # int64 fills slower
    for c in range(1, x.shape[0]):
        index.masked_fill_(x[c] > best, c)
        torch.maximum(best, x[c], out=best)
    return best, index.long()


def _box_masks(boxes: Tensor, size: Tuple[int, int]) -> Tensor:
    """``(N, H, W)`` bool: the pixels of :func:`box_extents`."""
    ext = box_extents(boxes, size)
    ys = torch.arange(size[0], device=boxes.device)
    xs = torch.arange(size[1], device=boxes.device)
    rows = (ys[None] >= ext[:, 1:2]) & (ys[None] < ext[:, 3:4])  # (N, H)
    cols = (xs[None] >= ext[:, 0:1]) & (xs[None] < ext[:, 2:3])  # (N, W)
    return rows[:, :, None] & cols[:, None, :]


def _masks_to_grid(masks, pad_shape: Tuple[int, int], size: Tuple[int, int],
                   device: torch.device) -> Tensor:
    """GT instance masks (``BitmapMasks``/``PolygonMasks``/tensor, at input
    resolution, padded or not) sampled nearest onto the ``size`` grid of the
    padded batch ``pad_shape``; ``(N, h, w)`` bool on ``device``."""
    if isinstance(masks, Tensor):
        masks = masks.bool()
    else:
        masks = torch.from_numpy(masks.to_ndarray()).bool()
    num, mask_h, mask_w = masks.shape
    if (mask_h, mask_w) != tuple(pad_shape):
        # unpadded masks: pad (with background) up to the batch shape
        if mask_h > pad_shape[0] or mask_w > pad_shape[1]:
            raise ValueError(f'gt masks of shape {(mask_h, mask_w)} are '
                             f'larger than the batch input shape {pad_shape}')
        padded = masks.new_zeros(num, *pad_shape)
        padded[:, :mask_h, :mask_w] = masks
        masks = padded
    return resize_labels_nearest(masks, size).to(device)


@MODELS.register_module()
class UPSNetPanopticHead(BasePanopticFusionHead):
    """Parameter-free panoptic head of UPSNet with an *unknown* class.

    Args:
        num_things_classes (int): Number of thing classes. Defaults to 80.
        num_stuff_classes (int): Number of stuff classes. Defaults to 53.
        keep_fraction (float): Fraction of GT instances kept when building
            the training logits (at least one); the rest become *unknown*.
            Defaults to 0.7.
        test_cfg (dict, optional): ``mask_overlap`` (drop a mask whose pixels
            are more than this fraction taken by kept masks of the same class,
            0.3), ``stuff_area_limit`` (stuff segments smaller than this many
            pixels become VOID, 4096), ``stuff_majority_thr`` (an instance
            whose semantic-argmax majority is a stuff class with at least this
            fraction of its pixels becomes that stuff, 0.5).  Detection
            thresholds (score, NMS, top-k) live in the ``rcnn`` test config.
        loss_panoptic (dict): Panoptic cross-entropy (ignore 255).
        init_cfg (dict, optional): Unused, the head has no parameters.
    """
    default_test_cfg = dict(
        mask_overlap=0.3, stuff_area_limit=4096, stuff_majority_thr=0.5)

    def __init__(self,
                 num_things_classes: int = 80,
                 num_stuff_classes: int = 53,
                 keep_fraction: float = 0.7,
                 test_cfg: OptConfigType = None,
                 loss_panoptic: OptConfigType = dict(
                     type='CrossEntropyLoss',
                     ignore_index=IGNORE_INDEX,
                     loss_weight=0.1),
                 init_cfg: OptMultiConfig = None) -> None:
        if not 0 < keep_fraction <= 1:
            raise ValueError(
                f'keep_fraction must be in (0, 1], got {keep_fraction}')
        unknown_keys = set(test_cfg or {}) - set(self.default_test_cfg)
        if unknown_keys:
            raise KeyError(
                f'unknown key(s) {sorted(unknown_keys)} in the panoptic '
                f'test_cfg of UPSNetPanopticHead; expected a subset of '
                f'{sorted(self.default_test_cfg)}')
        test_cfg = {**self.default_test_cfg, **(test_cfg or {})}
        super().__init__(
            num_things_classes=num_things_classes,
            num_stuff_classes=num_stuff_classes,
            test_cfg=test_cfg,
            loss_panoptic=loss_panoptic,
            init_cfg=init_cfg)
        self.keep_fraction = keep_fraction

    # ------------------------------------------------------------------
    # The panoptic logits Z (shared by training and inference)
    # ------------------------------------------------------------------
    def panoptic_logits(self, seg_logits: Tensor, boxes: Tensor,
                        labels: Tensor, mask_logits: Tensor) -> Tensor:
        """Panoptic logits ``Z`` of one image (Sec. 3.2, Eqs. 1-2).

        Args:
            seg_logits (Tensor): semantic logits ``X`` ``(T+S, H, W)``.
            boxes (Tensor): ``(N, 4)`` boxes in ``X``'s pixel frame.
            labels (Tensor): ``(N, )`` thing labels ``C_i`` in ``[0, T)``.
            mask_logits (Tensor): ``Y_mask_i``, the raw mask logits of class
                ``C_i`` pasted by :func:`paste_mask_logits`, ``(N, H, W)``.

        Returns:
            Tensor: ``Z = [X_stuff, Z_1..Z_N, Z_unk]``, ``(S + N + 1, H, W)``.
        """
        size = seg_logits.shape[-2:]
        x_thing = seg_logits[:self.num_things_classes]  # (T, H, W)
        x_stuff = seg_logits[self.num_things_classes:]  # (S, H, W)
        inside = _box_masks(boxes, size)  # (N, H, W)
        x_mask = torch.where(inside, x_thing[labels], 0)  # X_mask_i
        z_inst = x_mask + mask_logits  # Z_i = X_mask_i + Y_mask_i
        # Eq. 2; with no instance every pixel is outside all boxes: max = 0
        max_x_mask = x_mask.amax(0) if len(x_mask) else torch.zeros_like(
            x_thing[0])
        z_unk = x_thing.amax(0) - max_x_mask  # (H, W)
        return torch.cat([x_stuff, z_inst, z_unk[None]])

    def panoptic_argmax(self, seg_logits: Tensor, extents: Tensor,
                        labels: Tensor,
                        mask_crops: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """``panoptic_logits(...).argmax(0)`` without building ``Z``.

        ``Z`` has ``S + N + 1`` full-resolution channels (~150M floats for
        100 instances at 1216x800), but instance ``i``'s channel is
        ``X_thing[C_i] + Y_i`` inside its box and exactly 0 outside, so per
        pixel only three maxima compete: the best stuff channel, the best
        instance channel (inside the boxes: a running max over the box
        crops; outside some box: 0, from the first box not covering it) and
        ``Z_unk`` (Eq. 2, with ``max_i X_mask_i`` from the same crops).  Ties
        go to the lowest channel, as ``argmax`` does.

        Args:
            seg_logits (Tensor): semantic logits ``X`` ``(T+S, H, W)``.
            extents (Tensor): ``(N, 4)`` integer box extents.
            labels (Tensor): ``(N, )`` thing labels ``C_i``.
            mask_crops (list[Tensor]): ``Y_mask_i`` inside extent ``i``
                (from :func:`paste_mask_crops`).

        Returns:
            tuple[Tensor]: the panoptic argmax ``(H, W)`` (index into
            ``[stuff, instances, unknown]``) and, as a by-product, the
            semantic argmax ``X.argmax(0)`` ``(H, W)``.
        """
        size = seg_logits.shape[-2:]
        num_things, num_stuff = self.num_things_classes, self.num_stuff_classes
        num_inst = len(mask_crops)
        thing_max, thing_arg = channel_max(seg_logits[:num_things])  # (H, W)
        stuff_max, stuff_arg = channel_max(seg_logits[num_things:])  # (H, W)
        sem = torch.where(stuff_max > thing_max, stuff_arg + num_things,
                          thing_arg)

        # the best instance channel inside the boxes, and max_i X_mask_i
        inst_max = torch.full_like(thing_max, float('-inf'))
        inst_arg = torch.zeros_like(thing_arg)
        mask_max = torch.full_like(thing_max, float('-inf'))
        for i, (label, (x0, y0, x1, y1)) in enumerate(
                zip(labels.tolist(), extents.tolist())):
            x_mask = seg_logits[label, y0:y1, x0:x1]  # X_mask_i in its box
            z = x_mask + mask_crops[i]  # Z_i in its box
            best = inst_max[y0:y1, x0:x1]
            wins = z > best  # strict: a lower index keeps a tie
            inst_arg[y0:y1, x0:x1][wins] = i
            torch.maximum(best, z, out=best)
            crop_max = mask_max[y0:y1, x0:x1]
            torch.maximum(crop_max, x_mask, out=crop_max)
        if num_inst:
            # outside box f (the first not covering the pixel): Z_f = 0
            first_out = _first_box_not_covering(extents, size)
            outside = first_out < num_inst
            zero_wins = outside & ((inst_max < 0) |
                                   ((inst_max == 0) & (first_out < inst_arg)))
            inst_arg = torch.where(zero_wins, first_out, inst_arg)
            inst_max = torch.where(zero_wins, 0., inst_max)
            mask_max = torch.where(outside, mask_max.clamp(min=0), mask_max)
        else:
            mask_max.zero_()  # no instance: every pixel is outside all boxes
        z_unk = thing_max - mask_max  # Eq. 2

        # argmax over [stuff, instances, unknown], first maximum wins
        pan = stuff_arg
        best = stuff_max
        if num_inst:
            take = inst_max > best
            pan = torch.where(take, inst_arg + num_stuff, pan)
            best = torch.where(take, inst_max, best)
        pan = torch.where(z_unk > best, num_stuff + num_inst, pan)
        return pan, sem

    # ------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------
    def sample_instances(self,
                         batch_gt_instances: InstanceList) -> InstanceList:
        """Keep ``max(int(keep_fraction * N), 1)`` random GT instances of each
        image (none if it has none), in their original order (Sec. 3.3).

        At most ``254 - S`` are kept, so that no target index (``S + i``,
        unknown ``S + N``) reaches the ignore index 255; only images with
        hundreds of instances are affected, and their extra instances are
        *unknown* like the dropped ones.
        """
        max_keep = IGNORE_INDEX - 1 - self.num_stuff_classes
        kept = []
        for gt_instances in batch_gt_instances:
            num = len(gt_instances)
            num_keep = max(int(num * self.keep_fraction), 1) if num else 0
            num_keep = min(num_keep, max_keep)
            keep = torch.randperm(num)[:num_keep].sort().values
            kept.append(gt_instances[keep.to(gt_instances.labels.device)])
        return kept

    def panoptic_targets(self, gt_sem_seg: Tensor, gt_masks: Tensor) -> Tensor:
        """Training target of one image for ``Z`` (Sec. 3.3).

        Args:
            gt_sem_seg (Tensor): ``(H, W)`` mmdet labels, 255 ignored.
            gt_masks (Tensor): ``(N, H, W)`` bool masks of the KEPT instances.

        Returns:
            Tensor: ``(H, W)``: stuff pixels -> their stuff index ``[0, S)``,
            pixels of kept instance ``i`` -> ``S + i``, every other thing
            pixel (dropped instances, crowd, uncovered) -> unknown ``S + N``,
            ignored pixels -> 255.
        """
        num_things, num_stuff = self.num_things_classes, self.num_stuff_classes
        num_kept = gt_masks.shape[0]
        target = torch.full_like(gt_sem_seg, num_stuff + num_kept)  # unknown
        is_stuff = (gt_sem_seg >= num_things) & (
            gt_sem_seg < num_things + num_stuff)
        target = torch.where(is_stuff, gt_sem_seg - num_things, target)
        target = torch.where(gt_sem_seg >= num_things + num_stuff,
                             IGNORE_INDEX, target)
        if num_kept:
            covered, index = gt_masks.to(torch.uint8).max(0)
            target = torch.where(covered.bool(), num_stuff + index, target)
        return target

    def loss(self, seg_preds: Tensor, batch_kept_instances: InstanceList,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Panoptic loss at 1/4 scale (Sec. 3.3).

        Args:
            seg_preds (Tensor): semantic logits ``X`` ``(B, T+S, h, w)`` of
                the padded batch.
            batch_kept_instances (list[InstanceData]): per image, the kept
                GT instances from :meth:`sample_instances` with ``bboxes``
                (input frame), ``labels``, ``masks`` and ``mask_logits``
                ``(N, M, M)`` -- the mask head's raw logits of the GT class.
            batch_data_samples (list[DetDataSample]): with ``gt_sem_seg``.

        Returns:
            dict: ``loss_panoptic``.
        """
        batch_input_shape = batch_data_samples[0].batch_input_shape
        size = seg_preds.shape[-2:]
        # boxes are scaled by the logits' stride (1/4)
        box_scale = seg_preds.new_tensor([
            size[1] / batch_input_shape[1], size[0] / batch_input_shape[0]
        ]).repeat(2)
        gt_sem_segs = resize_labels_nearest(
            stack_gt_sem_seg(batch_data_samples, batch_input_shape),
            size)  # (B, h, w)

        logits, targets = [], []
        for seg_logits, instances, gt_sem_seg in zip(seg_preds,
                                                     batch_kept_instances,
                                                     gt_sem_segs):
            boxes = get_box_tensor(instances.bboxes) * box_scale
            y_mask = paste_mask_logits(instances.mask_logits, boxes, size)
            logits.append(
                self.panoptic_logits(seg_logits, boxes, instances.labels,
                                     y_mask))
            masks = _masks_to_grid(instances.masks, batch_input_shape, size,
                                   seg_preds.device)
            targets.append(self.panoptic_targets(gt_sem_seg, masks))
        logits, targets = self._pad_instances(logits, targets)
        return dict(loss_panoptic=self.loss_panoptic(logits, targets))

    def _pad_instances(self, logits: List[Tensor],
                       targets: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """Batch per-image ``Z`` with different instance counts: pad to the
        largest count with channels that can never win (inserted before
        *unknown*, which moves to the last channel in every image)."""
        num_channels = max(z.shape[0] for z in logits)
        padded_logits, padded_targets = [], []
        for z, target in zip(logits, targets):
            num_pad = num_channels - z.shape[0]
            pad = z.new_full((num_pad, ) + z.shape[1:],
                             torch.finfo(z.dtype).min)
            padded_logits.append(torch.cat([z[:-1], pad, z[-1:]]))
            unknown = z.shape[0] - 1
            padded_targets.append(
                torch.where(target == unknown, num_channels - 1, target))
        return torch.stack(padded_logits), torch.stack(padded_targets)

    # ------------------------------------------------------------------
    # Inference
    # ------------------------------------------------------------------
    def predict(self, det_results_list: InstanceList,
                seg_preds_list: List[Tensor], **kwargs) -> List[PixelData]:
        """Panoptic segmentation of each image.

        Args:
            det_results_list (list[InstanceData]): detections (after score
                threshold, class-agnostic NMS and top-k) with ``bboxes`` in
                the output frame, ``labels``, ``scores`` and ``mask_logits``
                ``(N, M, M)`` (raw logits of the detected class).
            seg_preds_list (list[Tensor]): semantic logits ``(T+S, H, W)`` in
                the output frame.

        Returns:
            list[PixelData]: ``sem_seg`` ``(1, H, W)`` int32 with
            ``label + instance_id * INSTANCE_OFFSET``; VOID = ``num_classes``.
        """
        return [
            self._predict_single(det_results, seg_logits)
            for det_results, seg_logits in zip(det_results_list,
                                               seg_preds_list)
        ]

    def _predict_single(self, det_results: InstanceData,
                        seg_logits: Tensor) -> PixelData:
        size = seg_logits.shape[-2:]
        num_stuff = self.num_stuff_classes
        order = det_results.scores.argsort(descending=True, stable=True)
        det_results = det_results[order]
        boxes = get_box_tensor(det_results.bboxes).to(seg_logits.dtype)

        # 1. paste the mask logits into their boxes, drop empty /
        # same-class-overlapped masks
        extents, y_crops = paste_mask_crops(
            det_results.mask_logits.to(seg_logits.dtype), boxes, size)
        keep = self.prune_masks([y > 0 for y in y_crops], det_results.labels,
                                extents, size)
        det_results, extents = det_results[keep], extents[keep]
        y_crops = [y_crops[i] for i in keep.tolist()]

        # 2. argmax of the full-resolution panoptic logits Z (never built)
        pan, sem = self.panoptic_argmax(seg_logits, extents,
                                        det_results.labels, y_crops)

        # 3. each channel's (label, instance id); unknown -> VOID
        num_inst = len(det_results)
        device = pan.device
        labels = torch.cat([
            torch.arange(self.num_things_classes, self.num_classes,
                         device=device),
            det_results.labels.to(device),
            torch.tensor([self.num_classes], device=device)
        ])
        inst_ids = torch.cat([
            torch.zeros(num_stuff, dtype=torch.long, device=device),
            torch.arange(1, num_inst + 1, device=device),
            torch.zeros(1, dtype=torch.long, device=device)
        ])

        # 4. post-processing: stuff relabelling, then the stuff area limit
        relabel, stuff_label = self._stuff_majority(pan, sem, num_inst)
        labels[num_stuff:num_stuff + num_inst] = torch.where(
            relabel, stuff_label, labels[num_stuff:num_stuff + num_inst])
        inst_ids[num_stuff:num_stuff + num_inst] = torch.where(
            relabel, 0, inst_ids[num_stuff:num_stuff + num_inst])
        label_map, id_map = labels[pan], inst_ids[pan]
        label_map = self._void_small_stuff(label_map)

        pan_seg = label_map + id_map * INSTANCE_OFFSET
        return PixelData(sem_seg=pan_seg[None].int())

    def prune_masks(self, masks: List[Tensor], labels: Tensor,
                    extents: Tensor, size: Tuple[int, int]) -> Tensor:
        """Greedy mask pruning, masks sorted by decreasing score.

        A mask is dropped when it is empty or when more than ``mask_overlap``
        of its pixels are already taken by kept masks of the SAME class.  The
        union of kept masks makes this sequential; each step only touches the
        mask's box.

        Args:
            masks (list[Tensor]): N bool binarised masks, mask ``i`` cropped
                to its extent (``(y1 - y0, x1 - x0)``).
            labels (Tensor): ``(N, )`` classes.
            extents (Tensor): ``(N, 4)`` integer box extents.
            size (tuple[int]): the image ``(H, W)``.

        Returns:
            Tensor: indices of the kept masks, in input order.
        """
        overlap_thr = self.test_cfg['mask_overlap']
        taken: Dict[int, Tensor] = {}  # class -> (H, W) union of kept masks
        keep = []
        for i, (label, (x0, y0, x1, y1)) in enumerate(
                zip(labels.tolist(), extents.tolist())):
            mask = masks[i]
            area = int(mask.sum())
            if area == 0:
                continue
            if label not in taken:
                taken[label] = mask.new_zeros(size)
            taken_crop = taken[label][y0:y1, x0:x1]
            if int((mask & taken_crop).sum()) > overlap_thr * area:
                continue
            taken_crop |= mask
            keep.append(i)
        return torch.tensor(keep, dtype=torch.long, device=labels.device)

    def _stuff_majority(self, pan: Tensor, sem: Tensor,
                        num_inst: int) -> Tuple[Tensor, Tensor]:
        """For each instance segment, whether the semantic argmax inside it is
        a stuff class for at least ``stuff_majority_thr`` of its pixels, and
        that class.  One ``bincount`` over (instance, class) pairs."""
        num_stuff, num_classes = self.num_stuff_classes, self.num_classes
        is_inst = (pan >= num_stuff) & (pan < num_stuff + num_inst)
        pairs = (pan[is_inst] - num_stuff) * num_classes + sem[is_inst]
        counts = torch.bincount(
            pairs, minlength=num_inst * num_classes).view(
                num_inst, num_classes)  # (N, T+S)
        top_count, top_class = counts.max(1)
        area = counts.sum(1)
        relabel = (top_class >= self.num_things_classes) & (area > 0) & (
            top_count >= self.test_cfg['stuff_majority_thr'] * area)
        return relabel, top_class

    def _void_small_stuff(self, label_map: Tensor) -> Tensor:
        """Stuff classes covering fewer than ``stuff_area_limit`` pixels of
        the image become VOID (``num_classes``)."""
        is_stuff = (label_map >= self.num_things_classes) & (
            label_map < self.num_classes)
        area = torch.bincount(
            label_map[is_stuff], minlength=self.num_classes + 1)
        too_small = area < self.test_cfg['stuff_area_limit']
        return torch.where(is_stuff & too_small[label_map], self.num_classes,
                           label_map)

