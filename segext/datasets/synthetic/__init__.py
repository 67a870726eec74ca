"""Synthetic dense-prediction data: the project's embedded default dataset.

Procedural scenes (textured sky / grass / sand stuff, disk / box / triangle
things, crowd clusters, void lines) written in public dataset layouts
('coco', 'coco-categories', 'cityscapes', 'voc', 'camvid') so that stock
mmdet / mmseg datasets and metrics read them. See ``docs/synthetic_data.md``
and ``tools/dataset_converters/generate_synthetic.py``.
"""
from .categories import SYNTHETIC_METAINFO, Category
from .generator import LAYOUTS, generate
from .scene import (CLASS_NAMES, STUFF_NAMES, THING_NAMES, Scene,
                    SceneRenderer, Segment, image_rng)

__all__ = [
    'generate', 'LAYOUTS', 'SYNTHETIC_METAINFO', 'Category', 'CLASS_NAMES',
    'THING_NAMES', 'STUFF_NAMES', 'Scene', 'SceneRenderer', 'Segment',
    'image_rng'
]
