"""Cityscapes panoptic segmentation for mmdet.

Reads the COCO-format panoptic annotations that cityscapesscripts'
``createPanopticImgs`` writes next to ``gtFine`` and the images of
``leftImg8bit/<split>/<city>/``::

    gtFine/cityscapes_panoptic_{train,val}.json
        images:      id = '<city>_<seq>_<frame>' (a string),
                     file_name = '<city>_<seq>_<frame>_leftImg8bit.png'
                     (no city folder)
        annotations: image_id, file_name = '..._gtFine_panoptic.png',
                     segments_info = [id, category_id, iscrowd, bbox, area]
        categories:  the 19 evaluated classes, id = Cityscapes *label id*
                     (7 road ... 33 bicycle), ordered by label id
    gtFine/cityscapes_panoptic_{train,val}/<...>_gtFine_panoptic.png
        RGB-coded segment ids (labelId * 1000 + k for things, labelId for
        stuff and for crowd "group" regions), 0 = void

Three things keep mmdet's stock :class:`CocoPanopticDataset` from reading
these files, and are what this module changes:

* labels: the stock dataset numbers classes in the json's category order,
  which here is stuff first; mmdet's panoptic heads expect things first.
  :class:`CityscapesPanopticAPI` returns category ids in the order of the
  class names asked for, so ``cat2label`` follows ``metainfo['classes']``.
* paths: an image lives in ``leftImg8bit/<split>/<city>/`` and its panoptic
  PNG is named by the json's annotation entry, not ``<image>.png``.
* speed: segment ids repeat across images (road is segment 7 in every
  image), so the stock per-image ``load_anns`` lookup is quadratic in the
  number of images (timing in ``docs/cityscapes_panoptic.md``);
  annotations are taken per image from the API's index instead.

Crowd ("group") regions of thing classes follow mmdet's panoptic
convention: no instance, their class in ``gt_sem_seg``, and ``iscrowd``
regions are ignored by the PQ metric. Void pixels are 255 in ``gt_sem_seg``.
"""
import copy
import os.path as osp
from typing import Dict, List

from mmengine.fileio import LocalBackend, get_file_backend, get_local_path

from mmdet.datasets import CocoPanopticDataset
from mmdet.datasets.api_wrappers import COCOPanoptic
from mmdet.registry import DATASETS
from ..utils.config import UserInputError
from .cityscapes_labels import CITYSCAPES_BY_NAME

CITYSCAPES_THING_CLASSES = ('person', 'rider', 'car', 'truck', 'bus', 'train',
                            'motorcycle', 'bicycle')
CITYSCAPES_STUFF_CLASSES = ('road', 'sidewalk', 'building', 'wall', 'fence',
                            'pole', 'traffic light', 'traffic sign',
                            'vegetation', 'terrain', 'sky')
CITYSCAPES_CLASSES = CITYSCAPES_THING_CLASSES + CITYSCAPES_STUFF_CLASSES
# class name -> Cityscapes label id (cityscapesscripts' helpers/labels.py),
# the category ids of createPanopticImgs' json (without --use-train-id)
CITYSCAPES_LABEL_IDS: Dict[str, int] = {
    name: CITYSCAPES_BY_NAME[name].id
    for name in CITYSCAPES_CLASSES
}
IMAGE_SUFFIX = '_leftImg8bit.png'


class CityscapesPanopticAPI(COCOPanoptic):
    """:class:`COCOPanoptic` for cityscapesscripts' panoptic json.

    Differences from the stock wrapper:

    * ``imgs[id]['segm_file']`` is the image's panoptic PNG as named by its
      annotation entry (``<city>_<seq>_<frame>_gtFine_panoptic.png``), not
      the image file name with ``.jpg`` replaced by ``.png``;
    * ``get_cat_ids(cat_names=names)`` returns the ids in the order of
      ``names`` and raises on a name the json does not have. mmdet's
      ``CocoDataset`` and ``CocoPanopticMetric`` enumerate that result to
      number the classes; COCO's json happens to list things first, the
      Cityscapes json lists categories by label id (stuff first).

    Args:
        annotation_file (str, optional): Path of the json file.
    """

    def __init__(self, annotation_file=None) -> None:
        self.annotation_file = annotation_file
        super().__init__(annotation_file)

    def createIndex(self) -> None:
        super().createIndex()
        for ann in self.dataset.get('annotations', []):
            img = self.imgs.get(ann['image_id'])
            if img is None:
                raise CityscapesAnnotationError(
                    f'{self.annotation_file}: annotation '
                    f"{ann.get('file_name')!r} refers to image id "
                    f"{ann['image_id']!r}, which is not in 'images'")
            img['segm_file'] = ann['file_name']

    def get_cat_ids(self, cat_names=[], sup_names=[], cat_ids=[]):
        if not cat_names or sup_names or cat_ids:
            return super().get_cat_ids(cat_names, sup_names, cat_ids)
        by_name = {
            cat['name']: cat['id']
            for cat in self.dataset['categories']
        }
        missing = [name for name in cat_names if name not in by_name]
        if missing:
            raise KeyError(f'classes {missing} are not among the categories '
                           f'of {self.annotation_file}: {sorted(by_name)}')
        return [by_name[name] for name in cat_names]



class CityscapesAnnotationError(UserInputError, ValueError):
    """A Cityscapes panoptic json or file name that does not fit: the tools
    print it as one line naming the json (exit 2), also when the dataset is
    first built inside ``runner.train()``."""


def city_of(file_name: str) -> str:
    """``'aachen_000000_000019_leftImg8bit.png'`` -> ``'aachen'``."""
    parts = file_name[:-len(IMAGE_SUFFIX)].split('_')
    if not file_name.endswith(IMAGE_SUFFIX) or len(parts) != 3:
        raise CityscapesAnnotationError(
            f'image file_name {file_name!r} is not a Cityscapes name '
            f'<city>_<seq>_<frame>{IMAGE_SUFFIX}')
    return parts[0]


@DATASETS.register_module()
class CityscapesPanopticDataset(CocoPanopticDataset):
    """Cityscapes panoptic segmentation (8 things + 11 stuff classes).

    Labels follow mmdet's panoptic order, things first: 0-7 person, rider,
    car, truck, bus, train, motorcycle, bicycle; 8-18 road, sidewalk,
    building, wall, fence, pole, traffic light, traffic sign, vegetation,
    terrain, sky; 255 void. Category ids of the json must be Cityscapes
    label ids (``createPanopticImgs`` without ``--use-train-id``).

    Typical arguments (``configs/_base_/datasets/cityscapes_panoptic.py``)::

        data_root='data/cityscapes/',
        ann_file='gtFine/cityscapes_panoptic_train.json',
        data_prefix=dict(img='leftImg8bit/train/',
                         seg='gtFine/cityscapes_panoptic_train/')

    Other arguments are those of :class:`CocoPanopticDataset`. With a local
    storage backend, every image and panoptic PNG is checked to exist when
    the annotations are loaded.
    """

    METAINFO = {
        'classes': CITYSCAPES_CLASSES,
        'thing_classes': CITYSCAPES_THING_CLASSES,
        'stuff_classes': CITYSCAPES_STUFF_CLASSES,
        'palette': [CITYSCAPES_BY_NAME[name].color
                    for name in CITYSCAPES_CLASSES],
    }
    COCOAPI = CityscapesPanopticAPI

    def load_data_list(self) -> List[dict]:
        """Load the json; one data info per image, in the json's order."""
        with get_local_path(self.ann_file,
                            backend_args=self.backend_args) as local_path:
            self.coco = self.COCOAPI(local_path)
        self._check_categories()
        self.cat_ids = self.coco.get_cat_ids(
            cat_names=self.metainfo['classes'])
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = copy.deepcopy(self.coco.cat_img_map)

        data_list = []
        for img_id in self.coco.get_img_ids():
            raw_img_info = dict(self.coco.imgs[img_id], img_id=img_id)
            data_list.append(
                self.parse_data_info(
                    dict(
                        raw_img_info=raw_img_info,
                        raw_ann_info=self.coco.imgToAnns[img_id])))
        del self.coco
        self._check_files_exist(data_list)
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """The stock parsing, with Cityscapes' image and PNG paths."""
        img_info = raw_data_info['raw_img_info']
        for ann in raw_data_info['raw_ann_info']:
            self._check_segment(ann, img_info['img_id'])
        data_info = super().parse_data_info(raw_data_info)

        file_name = img_info['file_name']
        data_info['img_path'] = osp.join(self.data_prefix['img'],
                                         city_of(file_name), file_name)
        if self.data_prefix.get('seg', None):
            if 'segm_file' not in img_info:
                raise CityscapesAnnotationError(f'{self.ann_file}: image '
                                 f"{img_info['img_id']!r} has no entry in "
                                 "'annotations'")
            data_info['seg_map_path'] = osp.join(self.data_prefix['seg'],
                                                 img_info['segm_file'])
        return data_info

    def _check_categories(self) -> None:
        """The json's categories must be Cityscapes classes with their label
        ids and thing/stuff kinds."""
        for cat in self.coco.dataset['categories']:
            name, cat_id = cat['name'], cat['id']
            kind = 'thing' if name in CITYSCAPES_THING_CLASSES else 'stuff'
            if name not in CITYSCAPES_LABEL_IDS:
                raise CityscapesAnnotationError(
                    f'{self.ann_file}: category {name!r} (id {cat_id}) is '
                    f'not one of the 19 Cityscapes train classes '
                    f'{list(CITYSCAPES_CLASSES)}')
            if cat_id != CITYSCAPES_LABEL_IDS[name]:
                raise CityscapesAnnotationError(
                    f'{self.ann_file}: category {name!r} has id {cat_id}, '
                    f'expected its Cityscapes label id '
                    f'{CITYSCAPES_LABEL_IDS[name]}; was the json written by '
                    'createPanopticImgs --use-train-id? Regenerate it '
                    'without that flag (the evaluation needs label ids)')
            if bool(cat['isthing']) != (kind == 'thing'):
                raise CityscapesAnnotationError(
                    f"{self.ann_file}: category {name!r} has isthing="
                    f"{cat['isthing']}, but it is a Cityscapes {kind} class")

    def _check_segment(self, ann: dict, img_id: str) -> None:
        if ann['category_id'] not in self.cat2label:
            raise CityscapesAnnotationError(
                f"{self.ann_file}: image {img_id!r}, segment {ann['id']}: "
                f"category id {ann['category_id']} is not among the label "
                f'ids of the classes {sorted(self.cat2label)} '
                f"({', '.join(self.metainfo['classes'])})")

    def _check_files_exist(self, data_list: List[dict]) -> None:
        """Fail early, naming a path, if images or PNGs are missing."""
        if not data_list or not isinstance(
                get_file_backend(
                    data_list[0]['img_path'], backend_args=self.backend_args),
                LocalBackend):
            return
        expected = {
            'img_path': "data_prefix['img']/<city>/<file_name>, i.e. "
            'leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png',
            'seg_map_path': "data_prefix['seg']/<annotation file_name>, i.e. "
            'gtFine/cityscapes_panoptic_<split>/<...>_gtFine_panoptic.png'
        }
        for key in ('img_path', 'seg_map_path'):
            missing = [
                info[key] for info in data_list
                if info.get(key) and not osp.isfile(info[key])
            ]
            if missing:
                raise FileNotFoundError(
                    f'{len(missing)} of {len(data_list)} files listed in '
                    f'{self.ann_file} are missing, e.g. {missing[0]!r} '
                    f'(expected at {expected[key]})')
