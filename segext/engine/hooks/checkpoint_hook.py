"""``SafeCheckpointHook``: mmengine's CheckpointHook, safe to kill and to load.

Upstream (mmengine 0.10.7) problems it fixes for local work dirs:

* ``Runner.save_checkpoint`` writes ``iter_N.pth`` in place
  (``LocalBackend.put`` = ``open(path, 'wb').write``): a kill mid-write
  leaves a torn file.  Here the runner writes a hidden temp file in the
  same directory, which is fsynced and renamed over ``iter_N.pth``.
* With ``max_keep_ckpts`` the outdated checkpoint is deleted BEFORE the new
  one is written (``max_keep_ckpts=1`` + a kill in between: nothing left to
  resume).  Here it is deleted after the new one is on disk -- so the disk
  needs room for one checkpoint more than ``max_keep_ckpts``.
* ``work_dir/last_checkpoint`` is rewritten in place (a kill between
  truncate and write leaves it empty).  Here it is replaced atomically.
* A full disk fails deep inside ``torch.save`` with ``Errno 28`` and no
  path.  Here free space is checked first (estimate: the previous
  checkpoint's size, or the tensors to be saved) and the error names the
  checkpoint and the size needed.
* The message hub is stored as ``HistoryBuffer`` objects and numpy values,
  which ``torch.load(weights_only=True)`` (torch >= 2.6) refuses
  (open-mmlab/mmengine#1655).  Here they are stored as tensors and
  builtins (:mod:`segext.utils.plain_state`) and restored on load, so the
  checkpoints load with torch's default, with no allow-list.

Remote back-ends (``backend_args``/``out_dir`` on S3, ...) keep upstream's
behaviour.  Remove when mmengine writes checkpoints atomically and without
numpy objects (not the case up to 0.10.7).

Select it with
``default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', ...))``;
its arguments are CheckpointHook's.
"""
from __future__ import annotations

import os
import os.path as osp
import shutil

import torch
from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ...utils.config import UserInputError
from ...utils.fileio import (atomic_write, remove_stale_temp_files,
                             replace_durably, temp_name)
from ...utils.plain_state import checkpoint_from_plain, checkpoint_to_plain

__all__ = ['SafeCheckpointHook', 'CheckpointWriteError', 'free_bytes']

#: head room on top of the size estimate (pickle overhead, growing history)
_MARGIN = 1.05
_MARGIN_BYTES = 1 << 20


class CheckpointWriteError(UserInputError):
    """The checkpoint cannot be written (no room, unwritable work dir)."""


def free_bytes(directory: str) -> int:
    """Free bytes for an unprivileged writer on ``directory``'s file
    system."""
    return shutil.disk_usage(directory).free


def _tensor_bytes(obj) -> int:
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _megabytes(num: float) -> str:
    return f'{num / 2**20:.1f} MB'


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """CheckpointHook whose checkpoints survive a kill at any moment and load
    with ``torch.load(weights_only=True)``; see the module docstring."""

    def _is_local(self) -> bool:
        return isinstance(self.file_backend, LocalBackend)

    # ------------------------------------------------ content (all back-ends)
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # CheckpointHook's priority is VERY_LOW: the other hooks' additions
        # to ``meta`` are encoded too
        checkpoint_to_plain(checkpoint)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # (SegextRunner has already decoded it, before any hook saw it)
        checkpoint_from_plain(checkpoint)

    # ------------------------------------------------------- writing (local)
    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self._is_local() and is_main_process():
            for tmp in remove_stale_temp_files(self.out_dir, '*.pth'):
                print_log(f'removed {tmp}, left by a checkpoint save that '
                          f'was killed', logger='current')

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        outdated = self._rotate(runner, step)
        previous = getattr(self, 'last_ckpt', None)
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        if is_main_process():
            self._check_free_space(runner, previous, outdated)
        tmp = osp.join(self.out_dir, temp_name(ckpt_filename))
        try:
            runner.save_checkpoint(
                self.out_dir, osp.basename(tmp), self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args,
                **self.args)
            if not is_main_process():
                return
            replace_durably(tmp, self.last_ckpt)
        except OSError as err:
            raise CheckpointWriteError(
                f'could not write checkpoint {self.last_ckpt}: {err}; the '
                f'earlier checkpoints are kept') from None
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
        atomic_write(
            osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt,
            'w')
        for path in outdated:  # only now that the new one is on disk
            if osp.isdir(path):
                shutil.rmtree(path)  # (DeepSpeed saves directories)
            elif osp.isfile(path):
                os.remove(path)

    def _rotate(self, runner, step) -> list:
        """Upstream's ``max_keep_ckpts`` bookkeeping; returns the paths to
        delete instead of deleting them."""
        outdated = []
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids
                                        and self.keep_ckpt_ids[-1] == step):
            return outdated
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            old = self.keep_ckpt_ids.popleft()
            if is_main_process():
                outdated.append(
                    osp.join(self.out_dir, self.filename_tmpl.format(old)))
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids',
                                       list(self.keep_ckpt_ids))
        return outdated

    def _size_estimate(self, runner, previous) -> int:
        """The previous checkpoint's size, else the bytes of the tensors
        about to be saved (model, and optimizer state when saved)."""
        if previous and osp.isfile(previous):
            return osp.getsize(previous)
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        total = _tensor_bytes(model.state_dict())
        if self.save_optimizer and hasattr(runner.optim_wrapper,
                                           'state_dict'):
            total += _tensor_bytes(runner.optim_wrapper.state_dict())
        return total

    def _check_free_space(self, runner, previous, outdated) -> None:
        need = int(self._size_estimate(runner, previous) * _MARGIN)
        need += _MARGIN_BYTES
        free = free_bytes(self.out_dir)
        if free >= need:
            return
        rotation = (f'; max_keep_ckpts={self.max_keep_ckpts} deletes '
                    f'{osp.basename(outdated[0])} only after the new '
                    f'checkpoint is written, so the disk needs room for one '
                    f'more' if outdated else '')
        raise CheckpointWriteError(
            f'not enough free space for checkpoint {self.last_ckpt}: needs '
            f'about {_megabytes(need)}, {_megabytes(free)} free in '
            f'{self.out_dir}{rotation}; the earlier checkpoints are kept')
