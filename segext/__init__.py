"""segext: classic dense-prediction models as OpenMMLab 3.x modules.

``custom_imports = dict(imports=['segext'], allow_failed_imports=False)`` in any
mmdet or mmseg config registers every module below in the host library's
registries (``mmdet.registry.MODELS``, ``mmseg.registry.MODELS``, ...) -- and
does nothing else: no function or attribute of torch, mmengine, mmcv, mmdet or
mmseg is replaced.  Fixes for the pinned stack are registered components a
config selects (``runner_type='SegextRunner'``, ``SafeCheckpointHook``); see
docs/checkpoints.md.
"""
from .version import __version__  # noqa: F401

from . import (datasets, engine, evaluation, models,  # noqa: E402,F401
               visualization)

__all__ = [
    '__version__', 'datasets', 'engine', 'evaluation', 'models', 'visualization'
]
