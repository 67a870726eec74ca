"""mmdet's visualiser, drawing whatever a segext model predicts."""
from typing import List, Optional

import numpy as np

from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.registry import VISUALIZERS
from mmdet.visualization import DetLocalVisualizer
from .palette import CoverLabelsMixin

__all__ = ['RobustDetLocalVisualizer']


@VISUALIZERS.register_module()
class RobustDetLocalVisualizer(CoverLabelsMixin, DetLocalVisualizer):
    """:class:`DetLocalVisualizer` that draws every result it is given.

    Upstream behaviour worked around (mmdet 3.3.0):

    * a checkpoint without ``meta['dataset_meta']`` makes ``init_detector``
      / ``DetInferencer`` fall back to COCO's 80 class names with the
      config's (shorter) palette, and ``get_palette`` then stops on
      ``AssertionError: The length of palette should not be less than
      num_classes``; without any class names, panoptic drawing asserts
      ``class information is not provided``.  Here missing names become
      ``'class <i>'`` and missing colours come from segext's deterministic
      fallback palette, with one warning naming what was missing;
    * an all-VOID panoptic result (nothing but the VOID id ``num_classes``)
      makes ``_draw_panoptic_seg`` call ``np.stack([])`` (``ValueError:
      need at least one array to stack``).  Here the image is drawn as is.

    Everything else is the stock visualiser's.  Select it with
    ``visualizer = dict(type='RobustDetLocalVisualizer')`` (the other keys
    of mmdet's ``default_runtime`` stay).  It can go once mmdet's
    ``get_palette`` and ``_draw_panoptic_seg`` handle both cases.
    """

    def _draw_panoptic_seg(self, image: np.ndarray, panoptic_seg,
                           classes: Optional[List[str]],
                           palette: Optional[List]) -> np.ndarray:
        if not self._panoptic_labels(panoptic_seg, len(classes)).size:
            self.set_image(image)  # all VOID: nothing to outline or label
            return self.get_image()
        return super()._draw_panoptic_seg(image, panoptic_seg, classes,
                                          palette)

    def _num_labels(self, data_sample) -> int:
        """1 + the largest class label anything in ``data_sample`` draws."""
        classes = self.dataset_meta.get('classes')
        labels = [0]
        for key in ('gt_instances', 'pred_instances'):
            if key in data_sample and 'labels' in data_sample.get(key):
                labels.append(_max(data_sample.get(key).labels))
        for key in ('gt_sem_seg', 'pred_sem_seg'):
            if key in data_sample:
                # mmdet draws labels < len(classes) only (255 = ignore)
                seg = _numpy(data_sample.get(key).sem_seg)
                seg = seg[seg < 255]
                labels.append(int(seg.max()) if seg.size else 0)
        for key in ('gt_panoptic_seg', 'pred_panoptic_seg'):
            if key in data_sample:
                void = len(classes) if classes is not None else None
                labels.append(_max(self._panoptic_labels(
                    data_sample.get(key), void)))
        return max(labels) + 1

    @staticmethod
    def _panoptic_labels(panoptic_seg, void: Optional[int]) -> np.ndarray:
        """Class labels of the non-VOID segments (VOID = ``void`` or the
        map's ``ignore_index``, as the stock drawing decides)."""
        ids = np.unique(_numpy(panoptic_seg.sem_seg))
        if 'label_names' in panoptic_seg:  # open-set results
            void = panoptic_seg.metainfo.get(
                'ignore_index', len(panoptic_seg.metainfo['label_names']))
        if void is not None:
            ids = ids[ids != void]
        return ids % INSTANCE_OFFSET


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, 'detach') else np.asarray(x)


def _max(labels) -> int:
    labels = _numpy(labels)
    return int(labels.max()) if labels.size else 0
