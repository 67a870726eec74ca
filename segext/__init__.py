"""segext: classic dense-prediction models as OpenMMLab 3.x modules.

``custom_imports = dict(imports=['segext'], allow_failed_imports=False)`` in any
mmdet or mmseg config registers every module below in the host library's
registries (``mmdet.registry.MODELS``, ``mmseg.registry.MODELS``, ...), and
applies the pinned-stack compatibility shims of :mod:`segext.utils.compat`.
"""
from .version import __version__  # noqa: F401
from .utils import compat  # noqa: F401  (must run before anything loads a checkpoint)

compat.apply()

from . import (datasets, engine, evaluation, models,  # noqa: E402,F401
               visualization)

__all__ = [
    '__version__', 'compat', 'datasets', 'engine', 'evaluation', 'models',
    'visualization'
]
