"""Resume with the random generators where the interrupted run left them."""
from __future__ import annotations

import logging

from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ..checkpoint_schedule import checkpoint_due
from ..rng_state import capture_rng_state, restore_rng_state

__all__ = ['RNGStateHook']


def _warn(msg: str):
    print_log(f'RNGStateHook: {msg}', logger='current', level=logging.WARNING)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the global RNG states in every checkpoint and restore them on
    resume, so a resumed run is bit-identical to an uninterrupted one.

    mmengine 0.10.7 saves the seed but not the generators' state: a resumed
    run re-seeds them, so every draw after the resume differs from the
    uninterrupted run (mmdet's RoI ``RandomSampler`` -> ``torch.randperm``,
    dropout, the data pipeline's ``numpy.random``).  This hook

    * writes ``checkpoint['rng_state'] = dict(world_size=N, ranks=[...])``,
      the torch (CPU, CUDA), numpy and ``random`` states of every rank as
      tensors and ints (loads with ``weights_only=True``);
    * on ``--resume`` restores this rank's states in ``before_train_epoch``
      of the first epoch (``load_from`` is not a resume: nothing restored);
    * runs validation with the generators saved and restored around it, so
      the training stream does not depend on ``val_interval`` (and the state
      a checkpoint records is the one the next training iteration sees).

    With an ``IterBasedTrainLoop`` pair it with
    ``train_cfg = dict(type='ExactResumeIterBasedTrainLoop', ...)``: the
    stock loop replays the skipped batches through the pipeline after this
    hook restored the states.  An ``EpochBasedTrainLoop`` resumed from a
    by-epoch checkpoint needs nothing else.  Resuming on another number of
    processes, or from a checkpoint without RNG state, warns and continues
    with the freshly seeded generators (as upstream).

    Remove when mmengine saves and restores the RNG states itself (not up to
    0.10.7).
    """

    priority = 'LOW'  # after_train_iter: before CheckpointHook (VERY_LOW)

    def __init__(self):
        self._resumed = None  # (epoch, iter, state) from the checkpoint
        self._outside_val = None  # the training state while validating
        self._gathered = None  # every rank's state, when world_size > 1

    # -- saving ------------------------------------------------------------
    def _state_now(self):
        return self._outside_val if self._outside_val is not None \
            else capture_rng_state()

    def _gather(self):
        """Every rank's state, gathered on all ranks (a collective)."""
        if get_world_size() > 1:
            self._gathered = all_gather_object(self._state_now())

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if checkpoint_due(runner, 'iter'):
            self._gather()

    def after_train_epoch(self, runner):
        if checkpoint_due(runner, 'epoch'):
            self._gather()

    def after_val_epoch(self, runner, metrics=None):
        self._gather()  # a best-checkpoint save may follow

    def before_save_checkpoint(self, runner, checkpoint):
        world_size = get_world_size()
        if world_size > 1:
            if self._gathered is None:
                _warn('no gathered RNG states for this save; the checkpoint '
                      'holds none (resume will not be bit-identical)')
                return
            ranks, self._gathered = self._gathered, None
        else:
            ranks = [self._state_now()]
        checkpoint['rng_state'] = dict(world_size=world_size, ranks=ranks)

    # -- validation does not move the training stream ----------------------
    def before_val(self, runner):
        self._outside_val = capture_rng_state()

    def after_val(self, runner):
        if self._outside_val is not None:
            restore_rng_state(self._outside_val)
            self._outside_val = None

    # -- resuming ----------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint):
        saved, meta = checkpoint.get('rng_state'), checkpoint.get('meta', {})
        self._resumed = None
        if saved is None:
            self._resumed = (meta.get('epoch'), meta.get('iter'), None)
            return
        if saved['world_size'] != get_world_size():
            _warn(f'the checkpoint holds the RNG states of '
                  f'{saved["world_size"]} processes, this run has '
                  f'{get_world_size()}: continuing with freshly seeded '
                  f'generators (not bit-identical to the earlier run)')
            return
        self._resumed = (meta.get('epoch'), meta.get('iter'),
                         saved['ranks'][get_rank()])

    def before_train_epoch(self, runner):
        resumed, self._resumed = self._resumed, None
        if resumed is None:
            return
        epoch, it, state = resumed
        if (epoch, it) != (runner.epoch, runner.iter) or it == 0:
            return  # load_from (fine-tuning), not a resume
        if state is None:
            _warn('the checkpoint holds no RNG state (saved without '
                  'RNGStateHook): continuing with freshly seeded generators '
                  '(not bit-identical to the earlier run)')
            return
        loop = runner.train_loop
        if type(loop) is IterBasedTrainLoop:
            _warn("train_cfg type 'IterBasedTrainLoop' replays the skipped "
                  'batches with the restored generators; use '
                  "type='ExactResumeIterBasedTrainLoop' for a bit-identical "
                  'resume')
        elif isinstance(loop, EpochBasedTrainLoop) and \
                it != epoch * len(loop.dataloader):
            _warn(f'resuming EpochBasedTrainLoop from iteration {it}, inside '
                  f'epoch {epoch + 1}: mmengine restarts that epoch, so the '
                  f'run is not bit-identical (save checkpoints by epoch)')
        restore_rng_state(state)
