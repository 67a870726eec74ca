"""Model components, registered in mmdet's and/or mmseg's ``MODELS``."""
from . import (backbones, decode_heads, detectors, layers, losses, necks,  # noqa: F401
               panoptic_fusion_heads, seg_heads)
