"""A pipeline step that refuses label maps that would silently be wrong.

Two kinds of broken annotation pass the stock mmseg/mmdet pipelines:

- a label value that is neither a class nor ``ignore_index`` (200 with 6
  classes): training stops at ``Target 200 is out of bounds`` without the
  file, and evaluation silently counts the pixels (mIoU 22.15 -> 21.70);
- a label map of another size than its image: training runs on with
  ``loss: nan`` and validation crashes.

:class:`CheckSegMap`, placed right after the annotation loader, names the
file instead -- or, with ``on_invalid='skip'``, drops the sample with a
warning and counts it.
"""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS as MMDET_TRANSFORMS
from mmengine.logging import print_log
from mmseg.registry import TRANSFORMS as MMSEG_TRANSFORMS

from ...utils.config import UserInputError

__all__ = ['CheckSegMap']


@MMSEG_TRANSFORMS.register_module()
@MMDET_TRANSFORMS.register_module()
class CheckSegMap(BaseTransform):
    """Check ``gt_seg_map``: the size of its image, values in
    ``{0 .. num_classes - 1} ∪ {ignore_index}``.

    Goes right after ``LoadAnnotations`` (mmseg) or
    ``LoadPanopticAnnotations`` (mmdet), before any geometric transform;
    the size is compared with ``ori_shape``, the image as read, so test
    pipelines that resize the image first are fine.

    Args:
        num_classes (int): the dataset's number of classes (mmdet
            panoptic: things + stuff).  ``tools/train.py`` checks that it
            matches the dataset's classes.
        ignore_index (int): the label of void pixels. Default: 255.
        on_invalid (str): ``'error'`` (default) raises naming the file;
            ``'skip'`` drops the sample with a warning that counts the
            samples skipped so far (per dataloader worker).  Skipping works
            in training only: mmengine's test-mode datasets refuse a
            dropped sample, and an evaluation must not leave images out.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255,
                 on_invalid: str = 'error') -> None:
        if on_invalid not in ('error', 'skip'):
            raise ValueError(f"CheckSegMap: on_invalid={on_invalid!r}, "
                             "expected 'error' or 'skip'")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'CheckSegMap: num_classes={num_classes!r}, '
                             'expected an integer >= 1')
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.on_invalid = on_invalid
        self.skipped = 0

    def _size_problem(self, seg_map: np.ndarray, results: dict):
        image_hw = tuple(results['ori_shape'][:2])
        if tuple(seg_map.shape[:2]) == image_hw:
            return None
        return (f'label map is {seg_map.shape[0]}x{seg_map.shape[1]} '
                f"(h x w), its image {results.get('img_path')} "
                f'{image_hw[0]}x{image_hw[1]}; expected the same size')

    def _value_problem(self, seg_map: np.ndarray):
        values = np.unique(seg_map)
        bad = values[((values < 0) | (values >= self.num_classes))
                     & (values != self.ignore_index)]
        if bad.size == 0:
            return None
        shown = ', '.join(str(v) for v in bad[:5]) + (
            ', ...' if bad.size > 5 else '')
        pixels = int(np.isin(seg_map, bad).sum())
        return (f'label values {shown} ({pixels} pixels) are neither a '
                f'class 0..{self.num_classes - 1} nor ignore_index '
                f'{self.ignore_index}')

    def transform(self, results: dict):
        seg_map = results.get('gt_seg_map', None)
        if seg_map is None:  # inference without annotations
            return results
        problem = (self._size_problem(seg_map, results)
                   or self._value_problem(seg_map))
        if problem is None:
            return results
        path = results.get('seg_map_path')
        if self.on_invalid == 'error':
            raise UserInputError(
                f"{path}: {problem} (CheckSegMap; on_invalid='skip' skips "
                f'such training samples)')
        self.skipped += 1
        print_log(
            f'CheckSegMap: skipped {path}: {problem} ({self.skipped} '
            f'sample(s) skipped so far)', logger='current', level=30)
        return None

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index}, '
                f'on_invalid={self.on_invalid!r})')
