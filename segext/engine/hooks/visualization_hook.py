"""Test-time overlays written as lossless PNG, whatever the image format."""
import os.path as osp

from mmdet.engine.hooks import DetVisualizationHook
from mmdet.registry import HOOKS

__all__ = ['PNGDetVisualizationHook']


@HOOKS.register_module()
class PNGDetVisualizationHook(DetVisualizationHook):
    """mmdet's :class:`DetVisualizationHook`, but ``--show-dir`` overlays are
    saved as ``<image name>.png``.

    The stock hook names each overlay after its source image, so COCO's JPEG
    inputs give JPEG-compressed panoptic overlays (blurred segment borders).
    Everything else — what is drawn, where, when — is the stock hook's.
    """

    def after_test_iter(self, runner, batch_idx, data_batch, outputs):
        visualizer = self._visualizer
        stock_add = visualizer.add_datasample

        def add_as_png(*args, out_file=None, **kwargs):
            if out_file is not None:
                out_file = osp.splitext(out_file)[0] + '.png'
            return stock_add(*args, out_file=out_file, **kwargs)

        visualizer.add_datasample = add_as_png
        try:
            super().after_test_iter(runner, batch_idx, data_batch, outputs)
        finally:
            del visualizer.add_datasample  # back to the class's method
