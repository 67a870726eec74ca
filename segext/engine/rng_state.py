"""The global random number generators' state as tensors, ints and floats.

``torch`` (CPU and, once initialised, every CUDA device), ``numpy.random``
and Python's ``random``: the generators mmdet/mmseg models and data
pipelines draw from (mmdet's RoI ``RandomSampler`` uses ``torch.randperm``,
``RandomFlip``/``RandomCrop`` use ``numpy.random``).  The captured state
holds only tensors, ints, floats and ``None``, so a checkpoint carrying it
still loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ['capture_rng_state', 'restore_rng_state', 'preserved_rng_state']


def capture_rng_state() -> dict:
    """The state of every global generator of this process."""
    version, internal, gauss_next = random.getstate()
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = dict(
        torch=torch.get_rng_state(),
        numpy=dict(
            keys=torch.from_numpy(keys.astype(np.int64)),  # uint32[624]
            pos=int(pos),
            has_gauss=int(has_gauss),
            cached_gaussian=float(cached_gaussian)),
        python=dict(
            version=int(version),
            internal=torch.tensor(internal, dtype=torch.int64),  # 625 ints
            gauss_next=gauss_next))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Set every global generator to ``state`` (from
    :func:`capture_rng_state`).  CUDA states are restored when the process
    sees as many devices as when they were captured."""
    torch.set_rng_state(state['torch'])
    npy = state['numpy']
    np.random.set_state(('MT19937', npy['keys'].numpy().astype(np.uint32),
                         npy['pos'], npy['has_gauss'],
                         npy['cached_gaussian']))
    py = state['python']
    random.setstate((py['version'], tuple(py['internal'].tolist()),
                     py['gauss_next']))
    cuda = state.get('cuda')
    if cuda and torch.cuda.is_available() and \
            len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


@contextmanager
def preserved_rng_state():
    """Run a block without changing any global generator's state."""
    state = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(state)
