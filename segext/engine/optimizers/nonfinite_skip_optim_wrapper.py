"""An optimizer wrapper that skips steps whose gradients are not finite."""
from __future__ import annotations

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

__all__ = ['NonFiniteSkipOptimWrapper']


@OPTIM_WRAPPERS.register_module()
class NonFiniteSkipOptimWrapper(OptimWrapper):
    """``OptimWrapper`` that leaves the weights and the optimizer state
    untouched when a gradient holds NaN or inf.

    Select it with ``optim_wrapper = dict(type='NonFiniteSkipOptimWrapper',
    optimizer=...)`` together with
    ``NonFiniteCheckHook(on_nonfinite='skip')``, which reports every skipped
    step and stops after too many in a row.  The check runs after DDP's
    all-reduce, so every rank takes the same decision.  (``AmpOptimWrapper``
    already skips such steps through its ``GradScaler``.)

    Attributes:
        skipped_steps (int): steps skipped so far in this process.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skipped_steps = 0

    def _grads_finite(self) -> bool:
        flags = [torch.isfinite(p.grad).all()
                 for group in self.optimizer.param_groups
                 for p in group['params'] if p.grad is not None]
        return bool(torch.stack(flags).all()) if flags else True

    def step(self, **kwargs) -> None:
        if not self._grads_finite():
            self.skipped_steps += 1
            return  # update_params() zeroes the gradients next
        super().step(**kwargs)
