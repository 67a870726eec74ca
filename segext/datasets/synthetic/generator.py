"""``generate()``: render scenes and write them in one dataset layout."""
import numbers
import os
import os.path as osp
import shutil
from typing import Dict, Sequence, Type

from .layouts import (MAX_IMAGES_PER_SPLIT, CamVidLayout,
                      CityscapesLayout, CocoCategoriesLayout, CocoLayout,
                      Layout, VOCLayout)
from .scene import EMPTY_EVERY, THING_NAMES, SceneRenderer, image_rng

LAYOUTS: Dict[str, Type[Layout]] = {
    cls.name: cls
    for cls in (CocoLayout, CocoCategoriesLayout, CityscapesLayout,
                VOCLayout, CamVidLayout)
}
MIN_SIZE, MAX_SIZE = 32, 4096


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_args(layout, num_train, num_val, size, seed):
    if layout not in LAYOUTS:
        raise ValueError(f'unknown layout {layout!r}; expected one of '
                         f'{sorted(LAYOUTS)}')
    for key, value in (('num_train', num_train), ('num_val', num_val)):
        if not _is_int(value) or not 1 <= value <= MAX_IMAGES_PER_SPLIT:
            raise ValueError(f'{key} must be an int in [1, '
                             f'{MAX_IMAGES_PER_SPLIT}], got {value!r}')
    if not (isinstance(size, Sequence) and len(size) == 2 and all(
            _is_int(v) and MIN_SIZE <= v <= MAX_SIZE for v in size)):
        raise ValueError(f'size must be (H, W) with ints in [{MIN_SIZE}, '
                         f'{MAX_SIZE}], got {size!r}')
    if not _is_int(seed) or seed < 0:
        raise ValueError(f'seed must be a non-negative int, got {seed!r}')


def _prepare_out_dir(out_dir: str, outputs, overwrite: bool) -> None:
    """Create ``out_dir``; refuse (or, with ``overwrite``, remove) the
    layout's own top-level entries if they already exist."""
    if osp.exists(out_dir) and not osp.isdir(out_dir):
        raise NotADirectoryError(
            f'out_dir {out_dir!r} exists and is not a directory')
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise PermissionError(
            f'cannot create out_dir {out_dir!r}: {e.strerror}') from e
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise PermissionError(f'out_dir {out_dir!r} is not writable')
    present = [name for name in outputs if osp.lexists(osp.join(out_dir,
                                                                name))]
    if present and not overwrite:
        raise FileExistsError(
            f'out_dir {out_dir!r} already contains {present}; pass '
            f'overwrite=True (CLI: --overwrite) to replace them, or choose '
            f'an empty directory')
    for name in present:
        path = osp.join(out_dir, name)
        if osp.isdir(path) and not osp.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def generate(out_dir: str,
             layout: str = 'coco',
             num_train: int = 64,
             num_val: int = 16,
             size: Sequence[int] = (192, 256),
             seed: int = 0,
             overwrite: bool = False) -> dict:
    """Render a synthetic dataset and write it in a public dataset layout.

    Image ``i`` of split ``s`` is rendered from its own seed
    ``(seed, s, i)``, so the output is byte-identical for the same
    arguments, and a smaller ``num_train`` writes a prefix of a larger one.
    Every :data:`~.scene.EMPTY_EVERY`-th image (index 9, 19, ...) has no
    thing at all.

    Args:
        out_dir (str): Output root (created if missing).
        layout (str): One of :data:`LAYOUTS`: ``'coco'``,
            ``'coco-categories'``, ``'cityscapes'``, ``'voc'``, ``'camvid'``.
        num_train (int): Number of training images.
        num_val (int): Number of images of every other split (val; and test
            for ``'camvid'``).
        size (tuple[int, int]): Image size ``(H, W)``.
        seed (int): Non-negative random seed.
        overwrite (bool): Replace the layout's outputs if already present.

    Returns:
        dict: ``layout``, ``out_dir``, ``size``, ``seed`` and ``splits``:
        per split ``num_images``, ``num_things`` (non-crowd instances),
        ``num_crowd``, ``num_empty`` and ``images`` (per-image records of
        the segments written, see :mod:`.layouts`).
    """
    _check_args(layout, num_train, num_val, size, seed)
    layout_cls = LAYOUTS[layout]
    _prepare_out_dir(out_dir, layout_cls.outputs, overwrite)
    writer = layout_cls(out_dir)
    renderer = SceneRenderer(tuple(size))

    splits = {}
    for split_index, split in enumerate(writer.splits):
        count = num_train if split == 'train' else num_val
        writer.begin_split(split)
        records = []
        for index in range(count):
            rng = image_rng(seed, split_index, index)
            scene = renderer(rng, empty=index % EMPTY_EVERY == EMPTY_EVERY - 1)
            records.append(writer.add(split, index, scene, rng))
        writer.end_split(split)
        segs = [s for r in records for s in r['segments']]
        splits[split] = dict(
            num_images=count,
            num_things=sum(1 for s in segs
                           if s['cls'] in THING_NAMES
                           and not s['iscrowd']),
            num_crowd=sum(s['iscrowd'] for s in segs),
            num_empty=sum(1 for r in records if not any(
                s['cls'] in THING_NAMES for s in r['segments'])),
            images=records)
    writer.finish()
    return dict(layout=layout, out_dir=out_dir,
                size=tuple(int(v) for v in size), seed=int(seed),
                splits=splits)

