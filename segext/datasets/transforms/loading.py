"""Loading transforms that name the file they could not read.

The stock loaders let a truncated or corrupt JPEG/PNG surface as a decoder
error (or ``'NoneType' object has no attribute 'squeeze'``) 14-16 frames
deep, without the path.  These subclasses do exactly what the stock ones do
and, when reading or decoding fails, raise :class:`UserInputError` naming
the file and what was expected; ``tools/train.py``/``test.py`` print it as
one line and exit 2.  Select them with one config line each::

    dict(type='CheckedLoadImageFromFile')            # mmdet and mmseg
    dict(type='CheckedLoadAnnotations')              # mmseg
    dict(type='CheckedLoadPanopticAnnotations')      # mmdet

They can go once the stock loaders name the file in their errors
(mmcv 2.1.0, mmseg 1.2.2 and mmdet 3.3.0 do not).
"""
from mmcv.transforms import LoadImageFromFile
from mmdet.datasets.transforms import LoadPanopticAnnotations
from mmdet.registry import TRANSFORMS as MMDET_TRANSFORMS
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS as MMSEG_TRANSFORMS

from ...utils.config import UserInputError

__all__ = [
    'NamesFileOnError', 'CheckedLoadImageFromFile', 'CheckedLoadAnnotations',
    'CheckedLoadPanopticAnnotations'
]


class NamesFileOnError:
    """Mixin: the stock ``transform``, with a failure naming the file.

    ``path_key`` is the results key holding the file read; ``expected``
    says what the file should be.
    """
    path_key = 'img_path'
    expected = 'an image file'

    def transform(self, results: dict):
        try:
            return super().transform(results)
        except UserInputError:
            raise
        except Exception as err:  # noqa: BLE001  (any decoder's error)
            path = results.get(self.path_key)
            detail = str(err).splitlines()[0] if str(err) else ''
            detail = detail.replace(f': {path}', '')  # named once, first
            raise UserInputError(
                f'{path}: cannot read {self.expected} '
                f'({type(err).__name__}: {detail}); is the file truncated '
                f'or corrupt?') from err


@MMSEG_TRANSFORMS.register_module()
@MMDET_TRANSFORMS.register_module()
class CheckedLoadImageFromFile(NamesFileOnError, LoadImageFromFile):
    """mmcv's ``LoadImageFromFile``; a failure names ``img_path`` (also
    mmcv's ``assert img is not None`` after a decoder returned nothing).
    ``ignore_empty=True`` keeps mmcv's meaning: skip the sample."""
    expected = 'an image (JPEG/PNG/...)'


@MMSEG_TRANSFORMS.register_module()
class CheckedLoadAnnotations(NamesFileOnError, LoadAnnotations):
    """mmseg's ``LoadAnnotations``; a failure names ``seg_map_path``."""
    path_key = 'seg_map_path'
    expected = 'a label map PNG'


@MMDET_TRANSFORMS.register_module()
class CheckedLoadPanopticAnnotations(NamesFileOnError,
                                     LoadPanopticAnnotations):
    """mmdet's ``LoadPanopticAnnotations``; a failure names
    ``seg_map_path``."""
    path_key = 'seg_map_path'
    expected = 'a panoptic PNG (RGB-encoded segment ids)'
