from . import hooks, optimizers, runner  # noqa: F401
from .hooks import (NonFiniteCheckHook, NonFiniteTrainingError,
                    PNGDetVisualizationHook, RNGStateHook)
from .optimizers import NonFiniteSkipOptimWrapper
from .runner import ExactResumeIterBasedTrainLoop

__all__ = [
    'PNGDetVisualizationHook', 'RNGStateHook', 'NonFiniteCheckHook',
    'NonFiniteTrainingError', 'NonFiniteSkipOptimWrapper',
    'ExactResumeIterBasedTrainLoop'
]
