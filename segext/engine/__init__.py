"""Runner-side components (registered in mmengine's root registries, so
mmdet- and mmseg-scoped configs find them): select them from a config."""
from . import hooks, optimizers, runner  # noqa: F401
from .hooks import (NonFiniteCheckHook, NonFiniteTrainingError,
                    PNGDetVisualizationHook, RNGStateHook, SafeCheckpointHook)
from .model_wrappers import CPUDistributedDataParallel
from .optimizers import NonFiniteSkipOptimWrapper
from .runner import ExactResumeIterBasedTrainLoop, SegextRunner

__all__ = [
    'PNGDetVisualizationHook', 'SafeCheckpointHook', 'RNGStateHook',
    'NonFiniteCheckHook', 'NonFiniteTrainingError',
    'NonFiniteSkipOptimWrapper', 'CPUDistributedDataParallel',
    'SegextRunner', 'ExactResumeIterBasedTrainLoop'
]
