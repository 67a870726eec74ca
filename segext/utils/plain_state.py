"""Checkpoint entries as tensors and builtins only (no pickled classes).

mmengine 0.10.7's ``Runner.save_checkpoint`` stores the message hub's
``HistoryBuffer`` objects and numpy arrays/scalars (seeds, metainfo), which
``torch.load(weights_only=True)`` refuses unless numpy and mmengine globals
are allow-listed.  :func:`to_plain` encodes them as tagged dicts of tensors
and builtins; :func:`from_plain` restores exactly the same objects (dtype,
values, ``HistoryBuffer.max_length``), so ``Runner.resume`` sees what
upstream would have given it.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ['to_plain', 'from_plain', 'checkpoint_to_plain',
           'checkpoint_from_plain']

TAG = '__segext_plain__'
#: the checkpoint entries mmengine fills with numpy / HistoryBuffer objects
CHECKPOINT_KEYS = ('meta', 'message_hub')
_KINDS = 'biuf'  # numpy kinds that map losslessly onto torch dtypes


def _encodable(array) -> bool:
    return array.dtype.kind in _KINDS and array.dtype.byteorder in '=|<'


def _encode_array(array: np.ndarray) -> dict:
    return {
        TAG: 'ndarray',
        'data': torch.from_numpy(np.ascontiguousarray(array).copy()),
        'dtype': array.dtype.str
    }


def _map_items(value, fn):
    """``fn`` applied to the items of a dict (keeping OrderedDict & co),
    list or tuple; any other value unchanged."""
    if isinstance(value, dict):
        out = type(value)()
        for k, v in value.items():
            out[k] = fn(v)
        return out
    if type(value) in (list, tuple):
        return type(value)(fn(v) for v in value)
    return value


def to_plain(value):
    """``value`` with every ``HistoryBuffer``, numeric numpy array and numpy
    scalar replaced by a tagged dict (recursing into dict/list/tuple)."""
    from mmengine.logging import HistoryBuffer
    if isinstance(value, HistoryBuffer):
        log, count = value._log_history, value._count_history
        if not (_encodable(log) and _encodable(count)):
            return value
        return {
            TAG: 'HistoryBuffer',
            'log_history': _encode_array(log),
            'count_history': _encode_array(count),
            'max_length': value.max_length
        }
    if isinstance(value, np.ndarray):
        return _encode_array(value) if _encodable(value) else value
    if isinstance(value, np.generic) and value.dtype.kind in _KINDS:
        return {TAG: 'scalar', 'value': value.item(),
                'dtype': value.dtype.str}
    return _map_items(value, to_plain)


def from_plain(value):
    """The inverse of :func:`to_plain`."""
    from mmengine.logging import HistoryBuffer
    if isinstance(value, dict) and TAG in value:
        kind = value[TAG]
        if kind == 'ndarray':
            return value['data'].numpy().astype(value['dtype'], copy=False)
        if kind == 'scalar':
            return np.dtype(value['dtype']).type(value['value'])
        if kind == 'HistoryBuffer':
            return HistoryBuffer(
                from_plain(value['log_history']),
                from_plain(value['count_history']), value['max_length'])
        raise ValueError(f'unknown {TAG} entry {kind!r} in a checkpoint')
    return _map_items(value, from_plain)


def checkpoint_to_plain(checkpoint: dict) -> dict:
    """Encode ``checkpoint``'s ``meta`` and ``message_hub`` in place."""
    for key in CHECKPOINT_KEYS:
        if key in checkpoint:
            checkpoint[key] = to_plain(checkpoint[key])
    return checkpoint


def checkpoint_from_plain(checkpoint: dict) -> dict:
    """Decode them in place (a no-op on a checkpoint that holds none)."""
    for key in CHECKPOINT_KEYS:
        if key in checkpoint:
            checkpoint[key] = from_plain(checkpoint[key])
    return checkpoint
