"""Stop (or skip) training on a NaN/inf loss; never save NaN weights."""
from __future__ import annotations

import logging
import math

import torch
from mmengine.dist import all_gather_object, all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import HOOKS

from ...utils.config import UserInputError
from ..checkpoint_schedule import checkpoint_due
from ..optimizers import NonFiniteSkipOptimWrapper

__all__ = ['NonFiniteCheckHook', 'NonFiniteTrainingError']


class NonFiniteTrainingError(RuntimeError):
    """Training stopped on a non-finite loss or non-finite weights."""


def _nonfinite_terms(outputs) -> dict:
    """``{name: value}`` of the loss terms in ``outputs`` (the model's
    ``log_vars``) that are NaN or inf."""
    bad = {}
    for name, value in (outputs or {}).items():
        if 'loss' not in name:
            continue
        value = float(value.detach().sum()) if torch.is_tensor(value) \
            else float(value)
        if not math.isfinite(value):
            bad[name] = value
    if len(bad) > 1:
        bad.pop('loss', None)  # the sum: name the terms
    return bad


def _nonfinite_weights(state_dict) -> list:
    return [name for name, value in state_dict.items()
            if torch.is_tensor(value) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())]


def _describe(names, total) -> str:
    shown = ', '.join(names[:3]) + (', ...' if len(names) > 3 else '')
    return f'{len(names)} of {total} weight tensors are NaN/inf ({shown})'


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Stop the run, or skip the step, when a loss term is NaN or inf, and
    never write a checkpoint with NaN/inf weights.

    mmengine 0.10.7 trains on with a NaN loss: the weights turn NaN, the
    ``CheckpointHook`` keeps saving them and ``max_keep_ckpts`` rotates the
    finite checkpoints out; the run ends with exit code 0.

    Args:
        on_nonfinite (str): ``'stop'`` (default): raise
            :class:`NonFiniteTrainingError` naming the iteration and the loss
            terms, before anything is saved (``tools/train.py`` prints it in
            one line and exits 2); the checkpoints already written stay.
            ``'skip'``: the optimizer step of that iteration is skipped
            (needs ``optim_wrapper.type='NonFiniteSkipOptimWrapper'`` or
            ``AmpOptimWrapper``) and the model's buffers (BN statistics,
            updated in the forward) are put back, with a warning and a
            running count.
        max_consecutive_skips (int): with ``'skip'``, stop once this many
            iterations in a row were non-finite. Defaults to 10.

    Before every checkpoint the weights are checked on all ranks (the
    collective check keeps DDP ranks together); a non-finite weight stops
    the run in either mode.  Use ``priority`` above ``CheckpointHook``'s
    (the default ``'ABOVE_NORMAL'`` is).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, on_nonfinite: str = 'stop',
                 max_consecutive_skips: int = 10):
        if on_nonfinite not in ('stop', 'skip'):
            raise ValueError(f"NonFiniteCheckHook: on_nonfinite must be "
                             f"'stop' or 'skip', got {on_nonfinite!r}")
        if int(max_consecutive_skips) < 1:
            raise ValueError('NonFiniteCheckHook: max_consecutive_skips must '
                             f'be >= 1, got {max_consecutive_skips!r}')
        self.on_nonfinite = on_nonfinite
        self.max_consecutive_skips = int(max_consecutive_skips)
        self.consecutive = self.skipped = 0
        self._buffers = []

    def before_train(self, runner):
        wrapper = runner.optim_wrapper
        if self.on_nonfinite == 'skip' and not isinstance(
                wrapper, (NonFiniteSkipOptimWrapper, AmpOptimWrapper)):
            raise UserInputError(
                "NonFiniteCheckHook(on_nonfinite='skip') needs "
                "optim_wrapper.type='NonFiniteSkipOptimWrapper' (or "
                f"'AmpOptimWrapper'), got {type(wrapper).__name__!r}")

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) \
            else runner.model

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.on_nonfinite == 'skip':  # BN statistics move in forward
            self._buffers = [b.detach().clone()
                             for b in self._model(runner).buffers()]

    def _restore_buffers(self, runner):
        with torch.no_grad():
            for buf, saved in zip(self._model(runner).buffers(),
                                  self._buffers):
                buf.copy_(saved)

    def _gathered_terms(self, outputs) -> dict:
        """The non-finite loss terms of any rank (the same on every rank)."""
        bad = _nonfinite_terms(outputs)
        if get_world_size() == 1:
            return bad
        flag = torch.tensor([float(bool(bad))])
        all_reduce(flag)
        if not flag.item():
            return {}
        merged = {}
        for rank_bad in all_gather_object(bad):
            merged.update(rank_bad)
        return merged

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        it = runner.iter + 1  # as in the log: Iter(train) [it/max_iters]
        bad = self._gathered_terms(outputs)
        if bad:
            terms = ', '.join(f'{k}={v}' for k, v in bad.items())
            if self.on_nonfinite == 'stop':
                raise NonFiniteTrainingError(
                    f'iteration {it}: non-finite loss ({terms}); training '
                    f'stopped, its weights not saved (the checkpoints already '
                    f'written are kept; lower the lr, check the data, or use '
                    f"NonFiniteCheckHook(on_nonfinite='skip'))")
            self._restore_buffers(runner)
            self.consecutive += 1
            self.skipped += 1
            print_log(
                f'NonFiniteCheckHook: iteration {it}: non-finite loss '
                f'({terms}); optimizer step skipped ({self.consecutive} in '
                f'a row, {self.skipped} in this run)', logger='current',
                level=logging.WARNING)
            if self.consecutive >= self.max_consecutive_skips:
                raise NonFiniteTrainingError(
                    f'iteration {it}: non-finite loss ({terms}) in '
                    f'{self.consecutive} consecutive iterations '
                    f'(max_consecutive_skips={self.max_consecutive_skips}); '
                    f'training stopped')
        else:
            self.consecutive = 0
        if self.on_nonfinite == 'skip':
            runner.message_hub.update_scalar('train/nonfinite_skips',
                                             self.skipped)
        if checkpoint_due(runner, 'iter'):
            self._check_weights(runner, f'iteration {it}')

    def after_train_epoch(self, runner):
        if checkpoint_due(runner, 'epoch'):
            self._check_weights(runner, f'epoch {runner.epoch + 1}')

    def _check_weights(self, runner, when):
        state = self._model(runner).state_dict()
        bad = _nonfinite_weights(state)
        if bad:
            raise NonFiniteTrainingError(
                f'{when}: {_describe(bad, len(state))}; the '
                f'checkpoint was not written (the earlier ones are kept)')

    def before_save_checkpoint(self, runner, checkpoint):
        """Last guard (rank 0): also covers best/last checkpoints."""
        state = checkpoint.get('state_dict', {})
        bad = _nonfinite_weights(state)
        if bad:
            raise NonFiniteTrainingError(
                f'iteration {runner.iter + 1}: {_describe(bad, len(state))}; '
                f'the checkpoint was not written (the earlier ones are kept)')
