"""Cityscapes' label table: the rows of cityscapesscripts' ``helpers/labels.py``
that segext uses (name, label id, train id, category, instances, ignored in
evaluation, colour), for :mod:`segext.datasets.cityscapes_panoptic` and the
synthetic data's Cityscapes layout."""
from dataclasses import dataclass
from typing import Dict, Tuple

__all__ = ['CityscapesLabel', 'CITYSCAPES_LABELS', 'CITYSCAPES_BY_NAME']


@dataclass(frozen=True)
class CityscapesLabel:
    """A row of cityscapesscripts' ``labels`` table (the fields used)."""
    name: str
    id: int
    train_id: int
    category: str
    has_instances: bool
    ignore_in_eval: bool
    color: Tuple[int, int, int]


CITYSCAPES_LABELS = [
    CityscapesLabel('unlabeled', 0, 255, 'void', False, True, (0, 0, 0)),
    CityscapesLabel('road', 7, 0, 'flat', False, False, (128, 64, 128)),
    CityscapesLabel('sidewalk', 8, 1, 'flat', False, False, (244, 35, 232)),
    CityscapesLabel('building', 11, 2, 'construction', False, False,
                    (70, 70, 70)),
    CityscapesLabel('wall', 12, 3, 'construction', False, False,
                    (102, 102, 156)),
    CityscapesLabel('fence', 13, 4, 'construction', False, False,
                    (190, 153, 153)),
    CityscapesLabel('pole', 17, 5, 'object', False, False, (153, 153, 153)),
    CityscapesLabel('traffic light', 19, 6, 'object', False, False,
                    (250, 170, 30)),
    CityscapesLabel('traffic sign', 20, 7, 'object', False, False,
                    (220, 220, 0)),
    CityscapesLabel('vegetation', 21, 8, 'nature', False, False,
                    (107, 142, 35)),
    CityscapesLabel('terrain', 22, 9, 'nature', False, False,
                    (152, 251, 152)),
    CityscapesLabel('sky', 23, 10, 'sky', False, False, (70, 130, 180)),
    CityscapesLabel('person', 24, 11, 'human', True, False, (220, 20, 60)),
    CityscapesLabel('rider', 25, 12, 'human', True, False, (255, 0, 0)),
    CityscapesLabel('car', 26, 13, 'vehicle', True, False, (0, 0, 142)),
    CityscapesLabel('truck', 27, 14, 'vehicle', True, False, (0, 0, 70)),
    CityscapesLabel('bus', 28, 15, 'vehicle', True, False, (0, 60, 100)),
    CityscapesLabel('train', 31, 16, 'vehicle', True, False, (0, 80, 100)),
    CityscapesLabel('motorcycle', 32, 17, 'vehicle', True, False,
                    (0, 0, 230)),
    CityscapesLabel('bicycle', 33, 18, 'vehicle', True, False,
                    (119, 11, 32)),
]
CITYSCAPES_BY_NAME: Dict[str, CityscapesLabel] = {
    lab.name: lab for lab in CITYSCAPES_LABELS}
