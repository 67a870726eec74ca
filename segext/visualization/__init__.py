from .det_local_visualizer import RobustDetLocalVisualizer
from .palette import cover_labels, fallback_palette
from .seg_local_visualizer import RobustSegLocalVisualizer

__all__ = [
    'RobustDetLocalVisualizer', 'RobustSegLocalVisualizer', 'cover_labels',
    'fallback_palette'
]
