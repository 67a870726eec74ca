from .check_seg_map import CheckSegMap
from .loading import (CheckedLoadAnnotations, CheckedLoadImageFromFile,
                      CheckedLoadPanopticAnnotations, NamesFileOnError)

__all__ = [
    'CheckSegMap', 'CheckedLoadImageFromFile', 'CheckedLoadAnnotations',
    'CheckedLoadPanopticAnnotations', 'NamesFileOnError'
]
