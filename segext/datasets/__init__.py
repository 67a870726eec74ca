from . import transforms  # noqa: F401
from . import synthetic  # noqa: F401
from .synthetic import SYNTHETIC_METAINFO
from .camvid import CamVidDataset
from .coco_panoptic import CheckedCocoPanopticDataset
from .cityscapes_panoptic import (CityscapesPanopticAPI,
                                 CityscapesPanopticDataset)

__all__ = [
    'synthetic', 'SYNTHETIC_METAINFO', 'CamVidDataset', 'CheckedCocoPanopticDataset',
    'CityscapesPanopticDataset', 'CityscapesPanopticAPI'
]
