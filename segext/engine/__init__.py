"""Runner-side components (registered in mmengine's root registries, so
mmdet- and mmseg-scoped configs find them): select them from a config."""
from . import hooks  # noqa: F401
from .hooks import PNGDetVisualizationHook, SafeCheckpointHook
from .model_wrappers import CPUDistributedDataParallel
from .runner import SegextRunner

__all__ = [
    'PNGDetVisualizationHook', 'SafeCheckpointHook',
    'CPUDistributedDataParallel', 'SegextRunner'
]
