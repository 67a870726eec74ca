"""Annotation encodings shared by the layout writers: label maps, panoptic
id maps, COCO boxes / polygons / RLE, and deterministic image writing."""
import json
import os
import os.path as osp
from typing import Callable, Dict, List, Optional

import cv2
import numpy as np
from PIL import Image

from .scene import Scene, Segment


def rgb2id(color) -> int:
    """COCO panoptic id of an RGB colour: ``R + 256 G + 256^2 B``."""
    r, g, b = (int(c) for c in color)
    return r + 256 * g + 256 * 256 * b


def id2rgb(id_map: np.ndarray) -> np.ndarray:
    """``(H, W)`` int ids -> ``(H, W, 3)`` uint8 RGB (inverse of rgb2id)."""
    id_map = id_map.astype(np.int64)
    return np.stack([id_map % 256, id_map // 256 % 256,
                     id_map // 65536 % 256], -1).astype(np.uint8)


def coco_bbox(mask: np.ndarray) -> List[int]:
    """Tight ``[x, y, w, h]`` box of a non-empty mask, in pixels."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """Pixel-edge polygons of a mask without holes, in COCO coordinates.

    Contours are traced on the mask upsampled 2x, where pixel ``x`` spans
    columns ``2x, 2x+1``; ``ceil(c / 2)`` then maps the traced boundary
    pixels onto the pixel *edges* ``x`` and ``x + 1``, so that
    ``pycocotools`` rasterises the polygons back to exactly ``mask``.
    """
    up = np.kron(mask.astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        pts = (contour[:, 0, :] + 1) // 2
        keep = np.ones(len(pts), bool)
        keep[1:] = (pts[1:] != pts[:-1]).any(1)
        pts = pts[keep]
        if len(pts) >= 3:
            polygons.append([float(v) for v in pts.ravel()])
    return polygons


def mask_to_rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE (``counts`` list, column-major), as COCO uses
    for crowd regions."""
    flat = np.asfortranarray(mask.astype(np.uint8)).ravel(order='F')
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:  # counts start with a run of zeros
        counts = [0] + counts
    return dict(counts=[int(c) for c in counts], size=list(mask.shape))


def label_map(scene: Scene, value_of: Callable[[Segment], int],
              void_value: int, dtype=np.uint8) -> np.ndarray:
    """Per-pixel map of ``value_of(segment)``; void pixels get
    ``void_value``."""
    out = np.full(scene.void.shape, void_value, dtype)
    for seg in scene.segments:
        out[seg.mask] = value_of(seg)
    return out


class IdAssigner:
    """Panoptic segment ids with a meaningful colour, as panopticapi's
    ``IdGenerator``: a stuff segment gets its category colour, a thing its
    category colour jittered by up to +-30 until unused (seeded, so ids are
    reproducible)."""

    def __init__(self, rng: np.random.Generator, categories) -> None:
        self.rng = rng
        self.taken = {(0, 0, 0)}
        self.taken.update(tuple(c.color) for c in categories if not c.isthing)

    def __call__(self, category) -> int:
        color = tuple(int(c) for c in category.color)
        if not category.isthing:
            return rgb2id(color)
        while color in self.taken:
            jitter = self.rng.integers(-30, 31, size=3)
            color = tuple(int(v) for v in np.clip(
                np.array(category.color) + jitter, 0, 255))
        self.taken.add(color)
        return rgb2id(color)


def panoptic_segments(scene: Scene, category_of: Callable[[Segment], object],
                      id_of: Callable[[Segment, object], int]):
    """Panoptic id map and COCO ``segments_info`` of a scene.

    Returns:
        tuple[np.ndarray, list[dict], list[Segment]]: the ``(H, W)`` int64
        id map (0 = void), the segments_info entries and the scene segments
        they describe (same order). Segments whose category is ``None`` are
        left void.
    """
    id_map = np.zeros(scene.void.shape, np.int64)
    infos, kept = [], []
    for seg in scene.segments:
        category = category_of(seg)
        if category is None:
            continue
        seg_id = id_of(seg, category)
        id_map[seg.mask] = seg_id
        infos.append(dict(id=int(seg_id), category_id=int(category.id),
                          iscrowd=int(seg.iscrowd), bbox=coco_bbox(seg.mask),
                          area=seg.area))
        kept.append(seg)
    return id_map, infos, kept


# ------------------------------------------------------------------ files
def ensure_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def write_jpg(path: str, rgb: np.ndarray, quality: int = 95) -> None:
    ensure_dir(osp.dirname(path))
    if not cv2.imwrite(path, rgb[..., ::-1],
                       [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f'could not write image {path!r}')


def write_png(path: str, array: np.ndarray,
              palette: Optional[List[int]] = None) -> None:
    """Write a PNG: ``(H, W, 3)`` is RGB, ``(H, W)`` uint8/uint16 single
    channel, or palette mode ("P") when ``palette`` is given."""
    ensure_dir(osp.dirname(path))
    if palette is not None:
        img = Image.fromarray(array.astype(np.uint8), mode='P')
        img.putpalette(palette)
        img.save(path)
        return
    data = array[..., ::-1] if array.ndim == 3 else array
    if not cv2.imwrite(path, np.ascontiguousarray(data)):
        raise OSError(f'could not write image {path!r}')


def write_json(path: str, obj: Dict) -> None:
    ensure_dir(osp.dirname(path))
    with open(path, 'w') as f:
        json.dump(obj, f)
