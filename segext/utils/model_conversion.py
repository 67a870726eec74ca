"""What every ``tools/model_converters/*.py`` script shares: reading the
source checkpoint, finding its state dict, and writing the converted one.

Each converter keeps only its own renaming and shape checks.
"""
from __future__ import annotations

import os
import os.path as osp
from collections import OrderedDict
from contextlib import contextmanager

import torch

from .checkpoint import load_checkpoint_file
from .cli import user_errors_to_exit
from .config import UserInputError

__all__ = ['ConversionError', 'unwrap_state_dict', 'read_checkpoint',
           'converter_errors_to_exit', 'save_converted']


class ConversionError(ValueError):
    """The checkpoint does not fit the model it is converted for."""


def unwrap_state_dict(checkpoint, prefixes=('module.', )
                      ) -> 'OrderedDict[str, torch.Tensor]':
    """The tensors of ``checkpoint`` (a state dict or ``{'state_dict': ...}``)
    with wrapper prefixes (DataParallel's ``module.``, ...) removed."""
    state = checkpoint
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    if not isinstance(state, dict) or not state or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(
            'expected a state dict of tensors (or {"state_dict": ...}), got '
            f'{type(state).__name__}')
    out = OrderedDict()
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key in out:
            raise ConversionError(
                f'duplicate key {key!r} after removing the prefixes '
                f'{list(prefixes)}')
        out[key] = value
    return out


def read_checkpoint(path: str):
    """The checkpoint at ``path``, read with ``torch.load(weights_only=True)``
    (:func:`segext.utils.checkpoint.load_checkpoint_file`); raises
    :class:`~segext.utils.checkpoint.CheckpointError` naming the file."""
    return load_checkpoint_file(path, map_location='cpu')


@contextmanager
def converter_errors_to_exit(tool: str, src: str):
    """One line and exit code 2 for an unreadable, refused or unfitting
    source checkpoint (``SEGEXT_DEBUG=1``: the traceback)."""
    with user_errors_to_exit(tool, src, only=(UserInputError,
                                              ConversionError)):
        yield


def save_converted(state, dst: str, **meta) -> None:
    """Write ``{'state_dict': state, 'meta': meta}`` (what mmengine's
    ``Pretrained`` init and ``load_from`` read), creating the folder."""
    if osp.dirname(dst):
        os.makedirs(osp.dirname(dst), exist_ok=True)
    torch.save(dict(state_dict=state, meta=meta), dst)
