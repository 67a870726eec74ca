"""Class names and colours for labels a visualiser was not told about."""
import colorsys
import warnings
from typing import List, Optional, Sequence, Tuple

__all__ = ['fallback_palette', 'cover_labels', 'CoverLabelsMixin']

_GOLDEN = 0.618033988749895  # hue step: consecutive colours far apart


def fallback_palette(num: int, start: int = 0) -> List[Tuple[int, int, int]]:
    """``num`` saturated, deterministic RGB colours for labels ``start`` ..
    ``start + num - 1`` (hues a golden-ratio step apart, so neighbouring
    labels never share a colour).  Independent of any random state."""
    colors = []
    for label in range(start, start + num):
        hue = (label * _GOLDEN) % 1.0
        value = 0.95 if label % 2 == 0 else 0.75
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, value)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return colors


def cover_labels(meta: dict,
                 num_labels: int,
                 owner: str,
                 warned: Optional[set] = None) -> dict:
    """``meta`` with ``classes`` and ``palette`` long enough for labels
    ``0 .. num_labels - 1``.

    Missing class names become ``'class <i>'`` and missing colours come from
    :func:`fallback_palette`; a palette given as a name (``'random'``,
    ``'coco'`` ...) is left to upstream's ``get_palette``.  Whatever is
    filled in is warned about once per ``owner`` and reason: a
    ``UserWarning`` naming what was missing (pass the same ``warned`` set
    across calls).  ``meta`` itself is never modified: the result is a new
    dict (or ``meta`` when nothing was missing).
    """
    warned = set() if warned is None else warned
    classes = meta.get('classes')
    palette = meta.get('palette')
    filled = []
    if classes is None or len(classes) < num_labels:
        have = list(classes or [])
        classes = have + [f'class {i}' for i in range(len(have), num_labels)]
        filled.append(('classes', len(have)))
    if palette is None or (isinstance(palette, (list, tuple))
                           and not _is_single_color(palette)
                           and len(palette) < len(classes)):
        have = [tuple(c) for c in (palette or [])]
        palette = have + fallback_palette(len(classes) - len(have),
                                          start=len(have))
        filled.append(('palette', len(have)))
    if not filled:
        return meta
    for key, have in filled:
        if (key, have) not in warned:
            warned.add((key, have))
            fill = ("are named 'class <i>'" if key == 'classes' else
                    "get colours from segext's fallback palette")
            warnings.warn(
                f'{owner}: dataset_meta has {have} {key} entries for '
                f'{len(classes)} labels (a checkpoint without '
                f"meta['dataset_meta']?); the missing ones {fill}",
                stacklevel=3)
    return dict(meta, classes=tuple(classes), palette=list(palette))


def _is_single_color(palette: Sequence) -> bool:
    """mmdet also accepts one ``(r, g, b)`` tuple for every class."""
    return isinstance(palette, tuple) and len(palette) == 3 and all(
        isinstance(c, int) for c in palette)


class CoverLabelsMixin:
    """For a visualiser subclass: before the stock ``add_datasample`` draws,
    ``dataset_meta`` is extended (:func:`cover_labels`) to the labels of the
    sample, as counted by the subclass's ``_num_labels(data_sample)``."""

    @property
    def _warned(self) -> set:
        """What :func:`cover_labels` has already warned about."""
        return self.__dict__.setdefault('_cover_labels_warned', set())

    def add_datasample(self, name, image, data_sample=None, *args,
                       **kwargs) -> None:
        if data_sample is not None:
            self.dataset_meta = cover_labels(
                self.dataset_meta, self._num_labels(data_sample),
                type(self).__name__, self._warned)
        super().add_datasample(name, image, data_sample, *args, **kwargs)
