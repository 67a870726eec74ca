from .cityscapes_panoptic_metric import CityscapesPanopticMetric
from .coco_panoptic_metric import NonMutatingCocoPanopticMetric

__all__ = ['CityscapesPanopticMetric', 'NonMutatingCocoPanopticMetric']
