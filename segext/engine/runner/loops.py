"""Training loops."""
from __future__ import annotations

import logging

from mmengine.logging import print_log
from mmengine.registry import LOOPS
from mmengine.runner import IterBasedTrainLoop

from ..rng_state import preserved_rng_state

__all__ = ['ExactResumeIterBasedTrainLoop']


@LOOPS.register_module()
class ExactResumeIterBasedTrainLoop(IterBasedTrainLoop):
    """``IterBasedTrainLoop`` whose resume leaves the random generators as
    the checkpoint left them.

    On resume mmengine 0.10.7's ``IterBasedTrainLoop.run`` advances the
    dataloader by loading every already-trained batch again; with
    ``num_workers=0`` that runs the data pipeline in this process and draws
    from the global numpy/``random``/torch generators, after
    :class:`~segext.engine.hooks.RNGStateHook` restored them in
    ``before_train_epoch``.  This loop skips those batches with the
    generators saved and restored around the skip; otherwise it is
    upstream's ``run`` line for line.  (Worker processes are seeded by the
    dataloader's ``worker_init_fn`` and replay their own streams.)

    Use with ``RNGStateHook`` in ``custom_hooks``.  Remove when mmengine
    restores RNG state on resume (not up to 0.10.7).
    """

    def run(self):
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            print_log(
                f'Advance dataloader {self._iter} steps to skip data that has '
                f'already been trained (random generators left untouched)',
                logger='current', level=logging.WARNING)
            with preserved_rng_state():
                for _ in range(self._iter):
                    next(self.dataloader_iterator)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None
                    and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model
