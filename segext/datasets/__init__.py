"""segext's datasets (registered in mmdet's / mmseg's ``DATASETS``).

The synthetic scene renderer is not imported here: tools and tests import
``segext.datasets.synthetic`` explicitly, so ``import segext`` stays light.
"""
from . import transforms  # noqa: F401
from .camvid import CamVidDataset
from .cityscapes_panoptic import (CityscapesPanopticAPI,
                                 CityscapesPanopticDataset)

__all__ = [
    'CamVidDataset', 'CityscapesPanopticDataset', 'CityscapesPanopticAPI'
]
