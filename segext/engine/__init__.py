from . import hooks  # noqa: F401
from .hooks import PNGDetVisualizationHook

__all__ = ['PNGDetVisualizationHook']
