"""Does a checkpoint's state dict fit a model?

mmengine's ``Runner.load_checkpoint`` loads non-strictly: a checkpoint of
another model (or of the same model with another ``num_classes``) is
scored with whatever happens to fit, behind a page of warnings.  For an
evaluation that is a wrong number, so ``tools/test.py`` compares first.
"""
from __future__ import annotations

import re
from typing import Mapping

from .config import UserInputError

__all__ = ['StateDictMismatch', 'compare_state_dicts', 'check_state_dict']

#: prefixes mmengine's ``load_checkpoint`` strips (``revise_keys``)
_REVISE = re.compile(r'^module\.')


class StateDictMismatch:
    """Missing, unexpected and mis-shaped keys of a checkpoint vs a model."""

    def __init__(self, missing, unexpected, mis_shaped):
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        #: [(key, checkpoint shape, model shape)]
        self.mis_shaped = sorted(mis_shaped)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mis_shaped)

    def summary(self, shown: int = 2) -> str:
        """``2 missing (a, b), 1 mis-shaped (c: (7, 32) in the checkpoint,
        (6, 32) in the model)``; ``shown`` names per kind."""
        def names(items, fmt):
            more = f', ... {len(items) - shown} more' if len(
                items) > shown else ''
            return ', '.join(fmt(i) for i in items[:shown]) + more

        parts = []
        if self.missing:
            parts.append(f'{len(self.missing)} missing from the checkpoint '
                         f'({names(self.missing, str)})')
        if self.unexpected:
            parts.append(f'{len(self.unexpected)} not in the model '
                         f'({names(self.unexpected, str)})')
        if self.mis_shaped:
            parts.append(
                f'{len(self.mis_shaped)} of another shape (' + names(
                    self.mis_shaped, lambda m:
                    f'{m[0]}: {tuple(m[1])} in the checkpoint, '
                    f'{tuple(m[2])} in the model') + ')')
        return '; '.join(parts)


def compare_state_dicts(checkpoint: Mapping, model: Mapping
                        ) -> StateDictMismatch:
    """Compare a checkpoint's ``state_dict`` with ``model.state_dict()``
    (keys as mmengine loads them: a leading ``module.`` is dropped)."""
    checkpoint = {_REVISE.sub('', k): v for k, v in checkpoint.items()}
    missing = [k for k in model if k not in checkpoint]
    unexpected = [k for k in checkpoint if k not in model]
    mis_shaped = [(k, tuple(v.shape), tuple(model[k].shape))
                  for k, v in checkpoint.items()
                  if k in model and hasattr(v, 'shape')
                  and tuple(v.shape) != tuple(model[k].shape)]
    return StateDictMismatch(missing, unexpected, mis_shaped)


def check_state_dict(checkpoint: Mapping, model: Mapping, source: str,
                     allow_partial: bool = False) -> StateDictMismatch:
    """Raise :class:`UserInputError` naming ``source`` unless the checkpoint
    fits the model exactly (or ``allow_partial``); returns the mismatch."""
    mismatch = compare_state_dicts(checkpoint, model)
    if mismatch and not allow_partial:
        raise UserInputError(
            f'checkpoint {source} does not fit the model of the config: '
            f'{mismatch.summary()}; is it a checkpoint of this config '
            f'(num_classes, depth, ...)? Pass --allow-partial-load to '
            f'evaluate anyway')
    return mismatch
