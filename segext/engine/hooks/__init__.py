from .checkpoint_hook import SafeCheckpointHook
from .nonfinite_check_hook import NonFiniteCheckHook, NonFiniteTrainingError
from .rng_state_hook import RNGStateHook
from .visualization_hook import PNGDetVisualizationHook

__all__ = [
    'PNGDetVisualizationHook', 'SafeCheckpointHook', 'RNGStateHook',
    'NonFiniteCheckHook', 'NonFiniteTrainingError'
]
