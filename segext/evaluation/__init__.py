from .cityscapes_panoptic_metric import CityscapesPanopticMetric

__all__ = ['CityscapesPanopticMetric']
