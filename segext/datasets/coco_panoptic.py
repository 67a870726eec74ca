"""mmdet's ``CocoPanopticDataset`` with annotation errors that name the file.

The stock dataset reports an invalid json as ``JSONDecodeError: ... char
1831`` and a segment whose category is not among the classes as
``KeyError: 99``, both deep in the first training iteration and without the
file.  :class:`CheckedCocoPanopticDataset` (one config line:
``type='CheckedCocoPanopticDataset'``) raises :class:`UserInputError`
naming the json, the image and the segment instead.  It can go once mmdet's
dataset names the file (3.3.0 does not).
"""
import json
from typing import List

from mmdet.datasets import CocoPanopticDataset
from mmdet.registry import DATASETS

from ..utils.config import UserInputError

__all__ = ['CheckedCocoPanopticDataset']


@DATASETS.register_module()
class CheckedCocoPanopticDataset(CocoPanopticDataset):
    """:class:`CocoPanopticDataset`; broken annotations name ``ann_file``.

    Arguments are those of :class:`CocoPanopticDataset`.
    """

    def load_data_list(self) -> List[dict]:
        try:
            return super().load_data_list()
        except json.JSONDecodeError as err:
            raise UserInputError(
                f'{self.ann_file}: not valid JSON ({err}); expected a COCO '
                f'panoptic annotation file') from None

    def parse_data_info(self, raw_data_info: dict) -> dict:
        img_info = raw_data_info['raw_img_info']
        for ann in raw_data_info['raw_ann_info']:
            self._check_category(ann, img_info)
        return super().parse_data_info(raw_data_info)

    def _check_category(self, ann: dict, img_info: dict) -> None:
        if ann['category_id'] in self.cat2label:
            return
        raise UserInputError(
            f"{self.ann_file}: image {img_info.get('file_name')!r}, segment "
            f"{ann.get('id')}: category id {ann['category_id']} is not the "
            f'id of one of the classes (ids {sorted(self.cat2label)}: '
            f"{', '.join(self.metainfo['classes'])}); expected a category "
            f"listed in 'categories' and in metainfo['classes']")
