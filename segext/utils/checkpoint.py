"""Reading checkpoints safely: the one loading helper of segext.

torch >= 2.6 loads with ``weights_only=True`` by default: only tensors,
containers, numbers and strings (plus the globals torch allows) are rebuilt,
so a file whose pickle would call ``os.system`` is refused.  Every load segext
performs keeps that default:

* :func:`load_checkpoint_file` -- ``tools/test.py``, ``load_from``,
  ``--resume`` (through :class:`segext.engine.SegextRunner`) and the model
  converters.
* Checkpoints written by **stock** mmengine 0.10.7 (its ``CheckpointHook``
  stores ``HistoryBuffer`` objects and numpy arrays/scalars) need a few more
  globals.  :func:`stock_mmengine_globals` lists them EXACTLY (classes and
  functions, no modules), and :func:`allow_stock_mmengine_checkpoints` admits
  them only for the duration of one of segext's own loads
  (``torch.serialization.safe_globals``); nothing is added process-wide.
  Checkpoints written with :class:`segext.engine.SafeCheckpointHook` need
  no allow-list at all.
* A file the user trusts and that needs full unpickling is named in the
  environment variable ``SEGEXT_TRUSTED_CHECKPOINTS`` (comma-separated
  paths); only those files are loaded with ``weights_only=False``.

See docs/checkpoints.md for the design and why ``builtins.getattr`` is
admitted only as :func:`_history_buffer_statistic`.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import pickle
import re
import zipfile
from contextlib import contextmanager

import torch

from .config import UserInputError

__all__ = [
    'TRUSTED_ENV', 'CheckpointError', 'stock_mmengine_globals',
    'allow_stock_mmengine_checkpoints', 'trusted_checkpoints',
    'load_checkpoint_file', 'refusal_message', 'is_intact_checkpoint',
    'find_latest_checkpoint'
]

#: Environment variable naming the files a user trusts with full unpickling.
TRUSTED_ENV = 'SEGEXT_TRUSTED_CHECKPOINTS'

#: numpy dtypes a stock mmengine checkpoint holds (HistoryBuffer histories,
#: seeds, metainfo); ``object`` is not among them.
_NUMPY_KINDS = 'biuf'  # bool, signed, unsigned, float


class CheckpointError(UserInputError):
    """A checkpoint that cannot be read or is refused (one-line message)."""


def _history_buffer_statistic(owner, name: str):
    """Stands in for ``builtins.getattr`` while loading a stock checkpoint.

    mmengine pickles each ``HistoryBuffer``'s ``statistics_methods`` as
    ``getattr(HistoryBuffer, 'mean')`` (protocol 2 cannot name a function by
    its qualified name).  Admitting the real ``getattr`` would let a crafted
    file reach ``fn.__globals__`` of any allowed function and overwrite
    module globals with ``SETITEM``; this function returns only a
    registered statistic of ``HistoryBuffer`` and refuses anything else.
    """
    import inspect

    from mmengine.logging import HistoryBuffer
    method = (HistoryBuffer.__dict__.get(name) if isinstance(name, str)
              and not name.startswith('_') else None)
    if owner is HistoryBuffer and inspect.isfunction(method):
        return method
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not a HistoryBuffer statistic')


def _numpy_dtype(obj, align=False, copy=True):
    """``numpy.dtype`` restricted to numeric/bool dtypes (no ``object``)."""
    import numpy as np
    dtype = np.dtype(obj, align, copy)
    if dtype.kind not in _NUMPY_KINDS or dtype.fields is not None:
        raise pickle.UnpicklingError(
            f'numpy dtype {dtype!r} is not a numeric dtype')
    return dtype


def stock_mmengine_globals() -> list:
    """The exact globals a stock mmengine 0.10.7 checkpoint needs beyond
    torch's defaults (measured with ``pickletools`` on a ``tools/train.py``
    checkpoint of the Panoptic FPN toy config)."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = [
        type(np.dtype(code)) for code in np.typecodes['All']
        if np.dtype(code).kind in _NUMPY_KINDS
    ]
    return [
        HistoryBuffer, _reconstruct, scalar, np.ndarray,
        (_numpy_dtype, 'numpy.dtype'),
        (_history_buffer_statistic, 'builtins.getattr'),
        *sorted(set(dtype_classes), key=lambda cls: cls.__name__),
    ]


@contextmanager
def allow_stock_mmengine_checkpoints():
    """Admit :func:`stock_mmengine_globals` for the loads inside the block."""
    with torch.serialization.safe_globals(stock_mmengine_globals()):
        yield


def trusted_checkpoints() -> set:
    """Real paths listed in ``SEGEXT_TRUSTED_CHECKPOINTS``."""
    listed = os.environ.get(TRUSTED_ENV, '')
    return {
        osp.realpath(osp.expanduser(p.strip()))
        for p in listed.split(',') if p.strip()
    }


def refusal_message(filename: str, err: Exception) -> str:
    """One line: the file, the global torch refused, and the opt-in."""
    text = str(err)
    found = re.search(r'WeightsUnpickler error:\s*(.+?)(?: Please use|\n|$)',
                      text)
    reason = (found.group(1) if found else text.strip().splitlines()[-1]
              if text.strip() else type(err).__name__)
    reason = reason.replace(' was not an allowed global by default.', '')
    return (f'checkpoint {filename} was refused: loading it would run code '
            f'from its pickle ({reason.strip()}); if you trust this file, '
            f'add it to {TRUSTED_ENV} (comma-separated paths)')


def load_checkpoint_file(filename: str, map_location='cpu'):
    """``torch.load`` a local checkpoint with ``weights_only=True`` (stock
    mmengine's extra globals admitted for this call only), or fully for a
    file listed in ``SEGEXT_TRUSTED_CHECKPOINTS``.

    Raises :class:`CheckpointError` (one line naming the file) when the
    file is missing, is not a torch checkpoint, or is refused.
    """
    filename = osp.expanduser(os.fspath(filename))
    if not osp.isfile(filename):
        raise CheckpointError(f'checkpoint not found: {filename}')
    trusted = osp.realpath(filename) in trusted_checkpoints()
    try:
        if trusted:
            from mmengine.logging import print_log
            print_log(f'{filename} is listed in {TRUSTED_ENV}: loading it '
                      f'with weights_only=False (its pickle may run code)',
                      logger='current', level=30)
            return torch.load(filename, map_location=map_location,
                              weights_only=False)
        with allow_stock_mmengine_checkpoints():
            return torch.load(filename, map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if 'Weights only load failed' in text and (
                'Unsupported operand' not in text):  # (junk: not a pickle)
            raise CheckpointError(refusal_message(filename, err)) from None
        raise _unreadable(filename, err) from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, ValueError,
            OSError) as err:
        raise _unreadable(filename, err) from None


def _unreadable(filename, err) -> CheckpointError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else ''
    return CheckpointError(
        f'could not read checkpoint {filename}: not a readable torch '
        f'checkpoint ({type(err).__name__}: {first})')


def is_intact_checkpoint(path: str) -> bool:
    """True when ``path`` is a complete torch zip checkpoint (a save killed
    mid-write has no central directory at its end)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return bool(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


_STEP_NAME = re.compile(r'(?:iter|epoch)_(\d+)\.pth')


def find_latest_checkpoint(work_dir: str):
    """The checkpoint ``--resume`` continues from, or ``None``.

    mmengine's ``find_latest_checkpoint`` returns whatever
    ``work_dir/last_checkpoint`` says; when that is empty, names a missing
    file, or names a truncated one, this returns the newest intact
    ``iter_*.pth``/``epoch_*.pth`` of ``work_dir`` and warns naming both.
    """
    from mmengine.logging import print_log
    save_file = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(save_file):
        return None
    with open(save_file) as f:
        named = f.read().strip()
    if named and ('://' in named or is_intact_checkpoint(named)):
        return named
    found = []
    for path in glob.glob(osp.join(work_dir, '*.pth')):
        step = _STEP_NAME.fullmatch(osp.basename(path))
        if step and is_intact_checkpoint(path):
            found.append((int(step.group(1)), path))
    latest = max(found)[1] if found else None
    state = ('is empty' if not named else
             f'names {named}, which is missing' if not osp.exists(named) else
             f'names {named}, which is truncated')
    print_log(
        f'{save_file} {state}; resuming from the newest intact checkpoint '
        f'in {work_dir}: {latest}', logger='current', level=30)
    return latest
