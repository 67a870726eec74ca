from .checkpoint_hook import SafeCheckpointHook
from .visualization_hook import PNGDetVisualizationHook

__all__ = ['PNGDetVisualizationHook', 'SafeCheckpointHook']
