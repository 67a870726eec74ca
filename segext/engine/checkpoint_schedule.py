"""When the run's ``CheckpointHook`` is about to save.

Hooks that must act on every rank before a checkpoint is written (the save
itself, and ``before_save_checkpoint``, run on rank 0 only) ask here, with
the same conditions as mmengine 0.10.7's ``CheckpointHook.after_train_iter``
and ``after_train_epoch``.
"""
from __future__ import annotations

from mmengine.hooks import CheckpointHook

__all__ = ['find_checkpoint_hook', 'checkpoint_due']


def find_checkpoint_hook(runner):
    """The runner's ``CheckpointHook`` (or subclass), or ``None``."""
    for hook in runner.hooks:
        if isinstance(hook, CheckpointHook):
            return hook
    return None


def checkpoint_due(runner, stage: str) -> bool:
    """Whether the ``CheckpointHook`` saves in this ``after_train_iter``
    (``stage='iter'``) or ``after_train_epoch`` (``stage='epoch'``)."""
    hook = find_checkpoint_hook(runner)
    if hook is None or hook.by_epoch != (stage == 'epoch'):
        return False
    if stage == 'epoch':
        return bool(hook.every_n_epochs(runner, hook.interval,
                                        hook.save_begin)
                    or (hook.save_last and hook.is_last_train_epoch(runner)))
    return bool(hook.every_n_train_iters(runner, hook.interval,
                                         hook.save_begin)
                or (hook.save_last and hook.is_last_train_iter(runner)))
