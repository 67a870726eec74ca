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

from ..utils.labels import (IGNORE_INDEX, masks_to_grid,
                            resize_labels_nearest, stack_gt_sem_seg)
from .mask_paste import (box_masks, channel_max, first_box_not_covering,
                         paste_mask_crops, paste_mask_logits)
from .post_processing import prune_masks, stuff_majority, void_small_stuff

__all__ = ['UPSNetPanopticHead']


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
        inside = box_masks(boxes, size)  # (N, H, W)
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
            first_out = first_box_not_covering(extents, size)
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
            masks = masks_to_grid(instances.masks, batch_input_shape, size,
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
        keep = prune_masks([y > 0 for y in y_crops], det_results.labels,
                           extents, size, self.test_cfg['mask_overlap'])
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
        relabel, stuff_label = stuff_majority(
            pan, sem, num_inst, self.num_things_classes, num_stuff,
            self.test_cfg['stuff_majority_thr'])
        labels[num_stuff:num_stuff + num_inst] = torch.where(
            relabel, stuff_label, labels[num_stuff:num_stuff + num_inst])
        inst_ids[num_stuff:num_stuff + num_inst] = torch.where(
            relabel, 0, inst_ids[num_stuff:num_stuff + num_inst])
        label_map, id_map = labels[pan], inst_ids[pan]
        label_map = void_small_stuff(label_map, self.num_things_classes,
                                     self.num_classes,
                                     self.test_cfg['stuff_area_limit'])

        pan_seg = label_map + id_map * INSTANCE_OFFSET
        return PixelData(sem_seg=pan_seg[None].int())
