"""``SegextRunner``: mmengine's Runner with safe loading, CPU DDP and robust
auto-resume.  Select it with one config line: ``runner_type = 'SegextRunner'``
(segext's configs and tools do; so can any mmdet/mmseg config that has
``custom_imports = dict(imports=['segext'])``).

What it changes, and the upstream behaviour (mmengine 0.10.7) behind each:

* **Loading** (``load_from``, ``--resume``, ``tools/test.py CHECKPOINT``):
  through :func:`segext.utils.checkpoint.load_checkpoint_file` --
  ``weights_only=True``, stock mmengine checkpoints admitted by an exact
  allow-list scoped to that one load, a refused file reported in one line
  with the opt-in (``SEGEXT_TRUSTED_CHECKPOINTS``).  Upstream's
  ``torch.load(filename, map_location)`` refuses its own checkpoints on
  torch >= 2.6 (open-mmlab/mmengine#1655).  ``init_cfg=dict(type=
  'Pretrained')`` loads run under the same allow-list.  Entries that
  :class:`SafeCheckpointHook` stored as tensors/builtins are decoded before
  any hook's ``after_load_checkpoint`` sees the checkpoint.
* **Auto-resume** (``resume=True`` without ``load_from``): an empty,
  dangling or truncated ``work_dir/last_checkpoint`` falls back to the
  newest intact ``iter_*``/``epoch_*`` checkpoint, with a warning
  (upstream resumes from the path '' or crashes in ``torch.load``).
* **CPU processes** (launcher != 'none' and no accelerator): the gloo
  process group is created before ``Runner.setup_env`` (upstream's
  ``init_dist`` calls ``torch.cuda.set_device``), and ``wrap_model`` builds
  :class:`segext.engine.CPUDistributedDataParallel` (``device_ids=None``,
  SyncBN synchronised over gloo).  With an accelerator both are upstream's
  code, unchanged.

Remove when mmengine loads its own checkpoints under ``weights_only`` and
supports CPU DDP (neither up to 0.10.7).
"""
from __future__ import annotations

import copy
import pickle
import re

from mmengine.dist import is_distributed
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.registry import MODEL_WRAPPERS, RUNNERS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import (_load_checkpoint,
                                        _load_checkpoint_to_model)
from torch.nn.parallel import DistributedDataParallel

from ...utils.checkpoint import (CheckpointError,
                                allow_stock_mmengine_checkpoints,
                                find_latest_checkpoint, load_checkpoint_file,
                                refusal_message)
from ...utils.plain_state import checkpoint_from_plain
from ..dist import init_cpu_process_group, no_accelerator

__all__ = ['SegextRunner', 'cpu_model_wrapper_cfg']

#: a URL or an mmengine scheme (``open-mmlab://``, ``torchvision://``, ...)
_REMOTE = re.compile(r'^[A-Za-z][\w+.-]*:')


def cpu_model_wrapper_cfg(model_wrapper_cfg, find_unused_parameters=False):
    """The ``model_wrapper_cfg`` for CPU processes: mmengine's default
    wrapper becomes :class:`CPUDistributedDataParallel`; any DDP subclass
    gets ``device_ids=None``.  The config is not modified."""
    if model_wrapper_cfg is None:
        cfg = dict(broadcast_buffers=False,
                   find_unused_parameters=find_unused_parameters)
    else:
        cfg = copy.deepcopy(dict(model_wrapper_cfg))
    wrapper = cfg.setdefault('type', 'MMDistributedDataParallel')
    if wrapper in ('MMDistributedDataParallel', MMDistributedDataParallel):
        wrapper = cfg['type'] = 'CPUDistributedDataParallel'
    if isinstance(wrapper, str):
        wrapper = MODEL_WRAPPERS.get(wrapper)
    if isinstance(wrapper, type) and issubclass(wrapper,
                                                DistributedDataParallel):
        cfg['device_ids'] = None  # the config's value wins over default_args
    return cfg


def _pretrained_checkpoints(model) -> list:
    """The ``checkpoint`` of every ``init_cfg=dict(type='Pretrained')``."""
    found = []
    for module in model.modules():
        init_cfg = getattr(module, 'init_cfg', None)
        for cfg in init_cfg if isinstance(init_cfg, list) else [init_cfg]:
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
                found.append(str(cfg.get('checkpoint')))
    return found


@RUNNERS.register_module()
class SegextRunner(Runner):
    """mmengine's ``Runner``; see the module docstring for what differs."""

    # ----------------------------------------------------------- CPU DDP
    def setup_env(self, env_cfg) -> None:
        if self.distributed and not is_distributed() and no_accelerator():
            # mmengine's setup_env skips init_dist once a group exists
            init_cpu_process_group(self.launcher,
                                   **dict(env_cfg.get('dist_cfg', {})))
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg, model):
        if (self.distributed and not is_model_wrapper(model)
                and no_accelerator()):
            model_wrapper_cfg = cpu_model_wrapper_cfg(
                model_wrapper_cfg,
                self.cfg.get('find_unused_parameters', False))
            self.logger.info(
                f'no accelerator: {model_wrapper_cfg["type"]} wraps the CPU '
                'model (device_ids=None)')
        return super().wrap_model(model_wrapper_cfg, model)

    # ----------------------------------------------------------- loading
    def load_or_resume(self) -> None:
        if self._has_loaded or not (self._resume and self._load_from is None):
            return super().load_or_resume()
        resume_from = find_latest_checkpoint(self.work_dir)
        self.logger.info(
            f'Auto resumed from the latest checkpoint {resume_from}.')
        if resume_from is not None:
            self.resume(resume_from)

    def load_checkpoint(self, filename: str, map_location='cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]):
        """Upstream's ``load_checkpoint`` with the file read safely."""
        checkpoint = checkpoint_from_plain(
            self._read_checkpoint(filename, map_location))
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(
            self.model) else self.model
        checkpoint = _load_checkpoint_to_model(
            model, checkpoint, strict, revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    @staticmethod
    def _read_checkpoint(filename: str, map_location):
        if not _REMOTE.match(str(filename)):
            return load_checkpoint_file(filename, map_location)
        try:
            with allow_stock_mmengine_checkpoints():
                return _load_checkpoint(filename, map_location=map_location)
        except pickle.UnpicklingError as err:
            raise CheckpointError(refusal_message(filename, err)) from None

    def _init_model_weights(self) -> None:
        try:
            with allow_stock_mmengine_checkpoints():
                super()._init_model_weights()
        except pickle.UnpicklingError as err:
            paths = _pretrained_checkpoints(self.model)
            for path in paths:  # which one? (only on this error path)
                if not _REMOTE.match(path):
                    load_checkpoint_file(path)  # raises naming the file
            shown = ', '.join(paths) or 'init_cfg=Pretrained'
            raise CheckpointError(refusal_message(shown, err)) from None
