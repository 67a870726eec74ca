"""mmdet's COCO panoptic metric without the side effect on the prediction."""
from typing import Optional

from mmdet.evaluation import CocoPanopticMetric
from mmdet.registry import METRICS

__all__ = ['NonMutatingCocoPanopticMetric']


@METRICS.register_module()
class NonMutatingCocoPanopticMetric(CocoPanopticMetric):
    """:class:`CocoPanopticMetric` that leaves the model's prediction as it
    was.

    Upstream bug (mmdet 3.3.0, ``CocoPanopticMetric._parse_predictions``):
    the prediction is read as ``sem_seg.cpu().numpy()[0]`` and then VOID
    (``num_classes`` and the ``ignore_index``) is set to panopticapi's 0 *in
    place*.  On a CUDA tensor ``.cpu()`` is a copy, so nothing leaks; on a
    CPU tensor ``.cpu().numpy()`` is a view of the model's output, so every
    later reader of the same data sample -- the visualisation hook's
    ``--show-dir`` overlays, ``tools/test.py --out`` dumps -- sees VOID
    relabelled as id 0 (class 0 of the first stuff/thing, e.g. "disk").  PQ
    itself is unaffected (the PNG written for panopticapi is meant to hold
    the 0s).

    Here the metric parses a private copy of the panoptic map when (and only
    when) it lives on the CPU; a CUDA prediction takes the stock path
    unchanged.  Everything else -- the PQ computation, the metric names
    (``coco_panoptic/PQ`` ...), the arguments -- is the stock metric's.

    Select it with one config line (mmdet's evaluators are dicts or lists of
    dicts, and only ``type`` changes)::

        val_evaluator = dict(type='NonMutatingCocoPanopticMetric')
        test_evaluator = val_evaluator

    This class can go once mmdet's ``_parse_predictions`` copies the map
    before writing VOID (``tests/test_evaluation/test_coco_panoptic_metric.py``
    has a test that fails as soon as the stock metric stops mutating).
    """

    def _parse_predictions(self,
                           pred: dict,
                           img_id: int,
                           segm_file: str,
                           label2cat: Optional[dict] = None) -> dict:
        return super()._parse_predictions(
            pred=self._with_private_panoptic_map(pred),
            img_id=img_id,
            segm_file=segm_file,
            label2cat=label2cat)

    @staticmethod
    def _with_private_panoptic_map(pred: dict) -> dict:
        """``pred`` (a data sample's dict) whose panoptic map the stock code
        may edit freely: a copy when it is a CPU tensor, else ``pred``."""
        panoptic = pred['pred_panoptic_seg']
        sem_seg = panoptic['sem_seg']
        if getattr(sem_seg, 'device', None) is None or \
                sem_seg.device.type != 'cpu':
            return pred  # CUDA: ``.cpu()`` already copies (the stock path)
        return dict(
            pred, pred_panoptic_seg=dict(panoptic, sem_seg=sem_seg.clone()))
