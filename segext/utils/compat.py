"""Compatibility shims for segext's pinned stack — kept in ONE place.

The pinned stack is torch 2.13 + mmengine 0.10.7 + mmcv 2.1.0 + mmdet 3.3.0 +
mmsegmentation 1.2.2.  Those OpenMMLab releases predate some torch changes; each
shim below says what breaks, why, and when it can go.  :func:`apply` is called
once when ``segext`` is imported (also through ``custom_imports``), so the stock
``tools/train.py`` of mmdet/mmseg gets the same fixes as ours.

Every shim is idempotent and leaves the CUDA path exactly as upstream's.
"""
from __future__ import annotations

import torch

_APPLIED = set()


def _torch_version() -> tuple:
    parts = []
    for tok in torch.__version__.split('+')[0].split('.')[:2]:
        parts.append(int(''.join(ch for ch in tok if ch.isdigit()) or 0))
    return tuple(parts)


# ---------------------------------------------------------------------------
# 1. Checkpoint loading under torch >= 2.6 (``weights_only=True`` default).
#
# mmengine 0.10.7's local loader calls ``torch.load(filename, map_location)``.
# Since torch 2.6 that means ``weights_only=True``, and a checkpoint written by
# mmengine's own CheckpointHook holds ``message_hub`` (HistoryBuffer objects),
# numpy arrays and scalars in ``meta`` — so ``--resume`` and ``load_from`` of
# our own checkpoints raise ``UnpicklingError``.  We re-register the local
# scheme through mmengine's public extension point
# (``CheckpointLoader.register_scheme(..., force=True)``) with the behaviour
# mmengine had under torch < 2.6: a full unpickle of a file the user named.
# Remove when mmengine passes ``weights_only`` itself (> 0.10.7).
# ---------------------------------------------------------------------------
def load_local_checkpoint(filename: str, map_location=None):
    """Load a local checkpoint as mmengine did before torch 2.6.

    Raises a ``FileNotFoundError`` naming the file when it does not exist, and
    a ``RuntimeError`` naming it when it is not a torch checkpoint.
    """
    import os.path as osp
    import pickle
    import zipfile

    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError,
            RuntimeError) as err:
        raise RuntimeError(
            f'could not read checkpoint {filename!r}: it is not a readable '
            f'torch checkpoint ({type(err).__name__}: {err})') from None


def _patch_checkpoint_loader():
    if 'checkpoint' in _APPLIED or _torch_version() < (2, 6):
        return
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)
    _APPLIED.add('checkpoint')


def apply():
    """Apply every shim (idempotent)."""
    _patch_checkpoint_loader()
