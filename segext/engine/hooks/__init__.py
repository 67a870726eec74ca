from .visualization_hook import PNGDetVisualizationHook

__all__ = ['PNGDetVisualizationHook']
