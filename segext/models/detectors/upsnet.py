"""UPSNet: A Unified Panoptic Segmentation Network (Xiong et al., CVPR 2019).

Mask R-CNN (ResNet-FPN, RPN, box and mask heads) + the deformable semantic
head (:class:`~segext.models.seg_heads.UPSNetSemanticHead`) + the
parameter-free panoptic head with an unknown class
(:class:`~segext.models.panoptic_fusion_heads.UPSNetPanopticHead`), trained
jointly (Sec. 3.4)::

    L = L_rpn + L_box + L_mask + w_sem L_sem + w_roi L_sem_roi + w_pan L_pan

mmdet's :class:`TwoStagePanopticSegmentor` never computes a panoptic loss and
hands its fusion head binarised masks only; this subclass feeds the panoptic
head the mask head's RAW logits, on the GT boxes in training (so ``L_pan``
reaches the mask head, the semantic head and the backbone) and on the
detections at test time.
"""
import copy
from typing import Dict, Tuple

import torch
from mmdet.models.detectors import TwoStagePanopticSegmentor
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox2roi, get_box_tensor, scale_boxes
from mmdet.utils import InstanceList
from torch import Tensor

__all__ = ['UPSNet']


@MODELS.register_module()
class UPSNet(TwoStagePanopticSegmentor):
    """UPSNet panoptic segmentor.

    Configured like mmdet's ``PanopticFPN`` (``backbone``, ``neck``,
    ``rpn_head``, ``roi_head``, ``semantic_head``, ``panoptic_fusion_head``,
    ``train_cfg``, ``test_cfg`` with ``rcnn`` and ``panoptic`` parts), with
    ``semantic_head=dict(type='UPSNetSemanticHead', ...)`` and
    ``panoptic_fusion_head=dict(type='UPSNetPanopticHead', ...)``.

    Any batch size works: images of different sizes are padded into one batch
    by the data preprocessor, every head works on the padded batch and uses
    each image's ``img_shape`` / ``batch_input_shape``; images without things
    contribute stuff/unknown targets only.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not (self.with_semantic_head and self.with_panoptic_fusion_head
                and self.with_roi_head and self.roi_head.with_mask):
            raise ValueError(
                'UPSNet needs a semantic_head, a panoptic_fusion_head and a '
                'roi_head with a mask_head')
        self._check_class_counts()

    def _check_class_counts(self) -> None:
        """The heads must agree on the things/stuff split."""
        semantic = (self.semantic_head.num_things_classes,
                    self.semantic_head.num_stuff_classes)
        panoptic = (self.num_things_classes, self.num_stuff_classes)
        if semantic != panoptic:
            raise ValueError(
                '(num_things_classes, num_stuff_classes) differ: '
                f'semantic_head {semantic} vs panoptic_fusion_head {panoptic}')
        for name in ('bbox_head', 'mask_head'):
            num_classes = getattr(self.roi_head, name).num_classes
            if num_classes != self.num_things_classes:
                raise ValueError(
                    f'roi_head.{name}.num_classes ({num_classes}) must equal '
                    f'the panoptic num_things_classes '
                    f'({self.num_things_classes})')

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """All of UPSNet's training losses.

        Args:
            batch_inputs (Tensor): ``(B, 3, H, W)`` padded input batch.
            batch_data_samples (list[DetDataSample]): with ``gt_instances``
                (non-crowd things: ``bboxes``, ``labels``, ``masks``) and
                ``gt_sem_seg`` (mmdet labels at input resolution).

        Returns:
            dict: RPN, box, mask, ``loss_seg``, ``loss_roi_seg`` (if enabled)
            and ``loss_panoptic`` losses.
        """
        x = self.extract_feat(batch_inputs)  # P2..P6

        # instance branch: RPN + box and mask heads (as Mask R-CNN)
        losses = self._instance_loss(x, batch_data_samples)

        # semantic head: X at 1/4 scale, L_sem and L_sem_roi
        seg_outs = self.semantic_head(x)
        losses.update(
            self.semantic_head.loss_by_feat(seg_outs, batch_data_samples))

        # panoptic head on the kept GT instances with raw mask logits: L_pan
        kept = self.panoptic_fusion_head.sample_instances(
            [sample.gt_instances for sample in batch_data_samples])
        kept = self._add_mask_logits(x, kept)
        losses.update(
            self.panoptic_fusion_head.loss(seg_outs['seg_preds'], kept,
                                           batch_data_samples))
        return losses

    def _instance_loss(self, x: Tuple[Tensor],
                       batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """RPN and RoI-head losses, exactly as mmdet's
        ``TwoStageDetector.loss`` after feature extraction."""
        losses = dict()
        if self.with_rpn:
            proposal_cfg = self.train_cfg.get('rpn_proposal',
                                              self.test_cfg.rpn)
            rpn_data_samples = copy.deepcopy(batch_data_samples)
            for data_sample in rpn_data_samples:  # RPN is class-agnostic
                data_sample.gt_instances.labels = torch.zeros_like(
                    data_sample.gt_instances.labels)
            rpn_losses, rpn_results_list = self.rpn_head.loss_and_predict(
                x, rpn_data_samples, proposal_cfg=proposal_cfg)
            for key in list(rpn_losses):
                if 'loss' in key and 'rpn' not in key:
                    rpn_losses[f'rpn_{key}'] = rpn_losses.pop(key)
            losses.update(rpn_losses)
        else:
            rpn_results_list = self._proposals(x, batch_data_samples)
        losses.update(
            self.roi_head.loss(x, rpn_results_list, batch_data_samples))
        return losses

    def _add_mask_logits(self, x: Tuple[Tensor],
                         instances_list: InstanceList) -> InstanceList:
        """Run the mask head on each image's boxes and store the raw logits
        (before the sigmoid) of each box's class as ``mask_logits``
        ``(N, M, M)``."""
        boxes = [get_box_tensor(inst.bboxes) for inst in instances_list]
        rois = bbox2roi(boxes)
        # the mask head runs even on zero boxes: its graph stays connected
        mask_preds = self._mask_logits(x, rois)
        labels = torch.cat([inst.labels for inst in instances_list])
        if mask_preds.shape[1] > 1:  # class-specific masks
            mask_preds = mask_preds[torch.arange(len(labels)), labels]
        else:
            mask_preds = mask_preds[:, 0]
        for inst, logits in zip(
                instances_list,
                mask_preds.split([len(b) for b in boxes])):
            inst.mask_logits = logits
        return instances_list

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Panoptic segmentation of a batch (Sec. 3.3, inference).

        Returns:
            list[DetDataSample]: each with ``pred_panoptic_seg.sem_seg``
            ``(1, H, W)`` -- ``label + instance_id * INSTANCE_OFFSET``, VOID
            = ``num_classes`` -- at the original image size if ``rescale``,
            else at the (unpadded) input size.
        """
        batch_img_metas = [sample.metainfo for sample in batch_data_samples]
        x = self.extract_feat(batch_inputs)

        rpn_results_list = self._proposals(x, batch_data_samples)

        # detections (score threshold, class-agnostic NMS, top-k from
        # test_cfg.rcnn) in the input frame, then their raw mask logits
        det_results_list = self.roi_head.predict_bbox(
            x,
            batch_img_metas,
            rpn_results_list,
            rcnn_test_cfg=self.roi_head.test_cfg,
            rescale=False)
        det_results_list = self._add_mask_logits(x, det_results_list)
        if rescale:
            for det_results, meta in zip(det_results_list, batch_img_metas):
                det_results.bboxes = scale_boxes(
                    det_results.bboxes,
                    [1 / s for s in meta['scale_factor']])

        seg_preds = self.semantic_head.predict(x, batch_img_metas, rescale)
        results_list = self.panoptic_fusion_head.predict(
            det_results_list, seg_preds)
        return self.add_pred_to_datasample(batch_data_samples, results_list)

    def _mask_logits(self, x: Tuple[Tensor], rois: Tensor) -> Tensor:
        """Raw mask logits ``(R, C or 1, M, M)`` of ``rois`` from the RoI
        head's public parts (its mask RoI extractor, shared head, mask
        head), as ``StandardRoIHead`` runs them for given RoIs."""
        roi_head = self.roi_head
        extractor = roi_head.mask_roi_extractor
        mask_feats = extractor(x[:extractor.num_inputs], rois)
        if roi_head.with_shared_head:
            mask_feats = roi_head.shared_head(mask_feats)
        return roi_head.mask_head(mask_feats)

    def _proposals(self, x: Tuple[Tensor],
                   batch_data_samples: SampleList) -> InstanceList:
        """Proposals for the RoI head: the data samples' pre-computed
        ``proposals`` when they carry them, else the RPN's predictions (test
        time; in training the RPN path is taken by :meth:`_instance_loss`)."""
        if batch_data_samples[0].get('proposals', None) is not None:
            return [sample.proposals for sample in batch_data_samples]
        if not self.with_rpn:
            raise KeyError('UPSNet without rpn_head needs `proposals` in '
                           'every data sample')
        return self.rpn_head.predict(x, batch_data_samples, rescale=False)
