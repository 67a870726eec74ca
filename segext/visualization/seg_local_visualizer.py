"""mmseg's visualiser, drawing whatever a segext model predicts."""
from typing import List, Optional

import numpy as np

from mmseg.registry import VISUALIZERS
from mmseg.visualization import SegLocalVisualizer
from .palette import CoverLabelsMixin, cover_labels

__all__ = ['RobustSegLocalVisualizer']


@VISUALIZERS.register_module()
class RobustSegLocalVisualizer(CoverLabelsMixin, SegLocalVisualizer):
    """:class:`SegLocalVisualizer` that draws every label it is given.

    Upstream behaviour worked around (mmseg 1.2.2):

    * ``set_dataset_meta`` asserts ``len(classes) == len(palette)`` and
      looks up a palette by dataset name when there is none, so a
      checkpoint whose ``dataset_meta`` lacks the palette (or carries a
      shorter one) stops ``MMSegInferencer`` before anything is drawn;
    * ``_draw_sem_seg`` silently skips labels ``>= len(classes)`` (a model
      with more classes than the checkpoint's names: those pixels show the
      bare image).

    Here missing class names become ``'class <i>'`` and missing colours come
    from segext's deterministic fallback palette, with one warning naming
    what was missing.  Everything else is the stock visualiser's.  Select it
    with ``visualizer = dict(type='RobustSegLocalVisualizer')`` (the other
    keys of mmseg's ``default_runtime`` stay).  It can go once mmseg fills
    in missing palette entries itself.
    """

    def set_dataset_meta(self,
                         classes: Optional[List] = None,
                         palette: Optional[List] = None,
                         dataset_name: Optional[str] = None) -> None:
        named = not palette and dataset_name  # the stock lookup by name
        if classes and not named and (not palette
                                      or len(palette) != len(classes)):
            meta = cover_labels(dict(classes=classes, palette=palette),
                                len(classes), type(self).__name__,
                                self._warned)
            classes, palette = meta['classes'], meta['palette']
            palette = palette[:len(classes)]  # the stock length check
        super().set_dataset_meta(classes, palette, dataset_name)

    @staticmethod
    def _num_labels(data_sample) -> int:
        """1 + the largest label (255 = ignore excluded) in the sample."""
        labels = [0]
        for key in ('gt_sem_seg', 'pred_sem_seg'):
            if key in data_sample:
                seg = data_sample.get(key).data
                seg = seg.detach().cpu().numpy() if hasattr(
                    seg, 'detach') else np.asarray(seg)
                seg = seg[seg < 255]
                labels.append(int(seg.max()) if seg.size else 0)
        return max(labels) + 1
