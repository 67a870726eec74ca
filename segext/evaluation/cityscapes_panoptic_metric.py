"""PQ / SQ / RQ on cityscapesscripts' panoptic ground truth.

mmdet's :class:`CocoPanopticMetric` computes PQ with panopticapi's
algorithm (``pq_compute_single_core`` / ``pq_compute_multi_core``); this
subclass only adapts what it reads to the Cityscapes json conventions:

* the ground truth is loaded with :class:`CityscapesPanopticAPI`, whose
  ``get_cat_ids`` follows the order of ``dataset_meta['classes']`` (the
  stock lookup follows the json's order, stuff first on Cityscapes, and
  would give predicted labels the wrong category ids);
* the stock metric looks up the ground-truth PNG as
  ``basename(img_path)`` with ``.jpg`` -> ``.png``, i.e.
  ``<stem>_leftImg8bit.png``; Cityscapes names it
  ``<stem>_gtFine_panoptic.png`` in the json's annotation entry.
  :meth:`process` hands the stock code samples whose ``img_path`` is the
  ground-truth PNG's name, so predictions are written under that name and
  compared with the right file.

The metric names stay the stock ones (``coco_panoptic/PQ`` ...).  It
derives from :class:`NonMutatingCocoPanopticMetric`, so it does not relabel
VOID in the prediction that the visualiser and ``--out`` dumps see.
"""
import os.path as osp
from typing import Optional, Sequence

from mmengine.fileio import get_local_path

from mmdet.registry import METRICS
from ..datasets.cityscapes_panoptic import CityscapesPanopticAPI
from .coco_panoptic_metric import NonMutatingCocoPanopticMetric


@METRICS.register_module()
class CityscapesPanopticMetric(NonMutatingCocoPanopticMetric):
    """Cityscapes panoptic quality (panopticapi's PQ, as the official
    ``evalPanopticSemanticLabeling``) against ``createPanopticImgs`` output.

    Args:
        ann_file (str): ``gtFine/cityscapes_panoptic_val.json`` (category
            ids = Cityscapes label ids).
        seg_prefix (str): The folder of its PNGs,
            ``gtFine/cityscapes_panoptic_val/``.
        **kwargs: The other arguments of :class:`CocoPanopticMetric`
            (``classwise``, ``outfile_prefix``, ``format_only``, ``nproc``,
            ``backend_args``, ...).
    """

    def __init__(self,
                 ann_file: Optional[str] = None,
                 seg_prefix: Optional[str] = None,
                 **kwargs) -> None:
        if not ann_file or not seg_prefix:
            raise ValueError(
                'CityscapesPanopticMetric needs ann_file (the '
                'cityscapes_panoptic_<split>.json) and seg_prefix (its PNG '
                f'folder), got ann_file={ann_file!r}, '
                f'seg_prefix={seg_prefix!r}')
        super().__init__(ann_file=None, seg_prefix=seg_prefix, **kwargs)
        with get_local_path(
                ann_file, backend_args=self.backend_args) as local_path:
            self._coco_api = CityscapesPanopticAPI(local_path)
        self.ann_file = ann_file
        self.categories = self._coco_api.cats

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Stock processing, each sample named after its ground-truth PNG."""
        super().process(data_batch,
                        [self._named_after_gt_png(s) for s in data_samples])

    def _named_after_gt_png(self, data_sample: dict) -> dict:
        img = self._coco_api.imgs.get(data_sample['img_id'])
        if img is None or 'segm_file' not in img:
            raise KeyError(
                f"image id {data_sample['img_id']!r} "
                f"({data_sample.get('img_path')}) has no panoptic annotation "
                f'in {self.ann_file}')
        return dict(
            data_sample, img_path=osp.join(self.seg_prefix, img['segm_file']))
