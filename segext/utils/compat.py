"""Compatibility shims for segext's pinned stack — kept in ONE place.

The pinned stack is torch 2.13 + mmengine 0.10.7 + mmcv 2.1.0 + mmdet 3.3.0 +
mmsegmentation 1.2.2.  Those OpenMMLab releases predate some torch changes; each
shim below says what breaks, why, and when it can go.  :func:`apply` is called
once when ``segext`` is imported (also through ``custom_imports``), so the stock
``tools/train.py`` of mmdet/mmseg gets the same fixes as ours.

Every shim is idempotent.  The distributed ones (section 2) choose at run time
and leave the CUDA path exactly as upstream's; the checkpoint-safety ones
(section 3) apply on every device.
"""
from __future__ import annotations

import torch

_APPLIED = set()


def _torch_version() -> tuple:
    parts = []
    for tok in torch.__version__.split('+')[0].split('.')[:2]:
        parts.append(int(''.join(ch for ch in tok if ch.isdigit()) or 0))
    return tuple(parts)


# ---------------------------------------------------------------------------
# 1. Checkpoint loading under torch >= 2.6 (``weights_only=True`` default).
#
# mmengine 0.10.7's local loader calls ``torch.load(filename, map_location)``.
# Since torch 2.6 that means ``weights_only=True``, and a checkpoint written by
# mmengine's own CheckpointHook holds ``message_hub`` (HistoryBuffer objects),
# numpy arrays and scalars in ``meta`` — so ``--resume`` and ``load_from`` of
# our own checkpoints raise ``UnpicklingError``.  We re-register the local
# scheme through mmengine's public extension point
# (``CheckpointLoader.register_scheme(..., force=True)``) with the behaviour
# mmengine had under torch < 2.6: a full unpickle of a file the user named.
# Remove when mmengine passes ``weights_only`` itself (> 0.10.7).
# ---------------------------------------------------------------------------
def load_local_checkpoint(filename: str, map_location=None):
    """Load a local checkpoint as mmengine did before torch 2.6.

    Raises a ``FileNotFoundError`` naming the file when it does not exist, and
    a ``RuntimeError`` naming it when it is not a torch checkpoint.
    """
    import os.path as osp
    import pickle
    import zipfile

    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError,
            RuntimeError) as err:
        raise RuntimeError(
            f'could not read checkpoint {filename!r}: it is not a readable '
            f'torch checkpoint ({type(err).__name__}: {err})') from None


def _patch_checkpoint_loader():
    if 'checkpoint' in _APPLIED or _torch_version() < (2, 6):
        return
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)
    _APPLIED.add('checkpoint')


# ---------------------------------------------------------------------------
# 2. Distributed training without CUDA (torch.distributed on CPU, gloo).
#
# mmengine 0.10.7 assumes a GPU per process on the distributed path:
#   * ``_init_dist_pytorch`` / ``_init_dist_slurm`` / ``_init_dist_mpi`` call
#     ``torch.cuda.set_device(local_rank)`` (AttributeError on a CPU build of
#     torch, "no CUDA GPUs" on a CUDA build without GPU), ``_init_dist_slurm``
#     falls back to ``proc_id % torch.cuda.device_count()`` (division by zero)
#     and every stock config says ``env_cfg.dist_cfg.backend='nccl'``;
#   * ``Runner.wrap_model`` builds ``MMDistributedDataParallel(device_ids=
#     [LOCAL_RANK])``, which torch's DDP rejects for a CPU module;
#   * ``torch.nn.SyncBatchNorm.forward`` (torch 2.13) raises "SyncBatchNorm
#     expected input tensor to be on GPU" under an initialised process group,
#     torch has no CPU kernels for its sync path (``batch_norm_stats``...),
#     and DDP's constructor refuses SyncBatchNorm in a CPU module.
# The rest of the path was checked and is device-neutral once the backend is
# gloo: collectives (``broadcast``/``all_reduce``/``sync_random_seed``/
# ``all_gather_object``/``collect_results``) pick their device with
# ``get_comm_device`` (cpu for gloo); ``get_device`` is cpu without CUDA;
# ``revert_sync_batchnorm``/``convert_sync_batchnorm('torch')`` only swap
# modules; EMA follows the model's device; the logger's memory readout is
# guarded by ``is_cuda_available``.  Not covered: mmcv's ``MMSyncBN`` (CUDA
# kernels only; use ``SyncBN``), ``init_backend='deepspeed'/'colossalai'``
# and ``FlexibleRunner`` strategies (left to upstream), and mmdet's
# ``utils.sync_random_seed(device='cuda')``/``obj2tensor`` helpers, which
# nothing on mmdet's or segext's training path calls with CUDA on CPU.
#
# Choice at run time, per process: when mmengine's ``get_device()`` is 'cpu'
# (no CUDA/NPU/MLU/MPS/MUSA device, or ``CUDA_VISIBLE_DEVICES=''``) the
# functions below take the CPU path; otherwise they call upstream's code
# unchanged, so the CUDA path (nccl, set_device, device_ids) is upstream's.
# Remove when mmengine supports CPU DDP itself (not the case up to 0.10.7).
# ---------------------------------------------------------------------------
_ACCEL_BACKENDS = ('nccl', 'hccl', 'cncl', 'mccl', 'smddp')


def _no_accelerator() -> bool:
    """True when mmengine puts the model on the CPU."""
    from mmengine.device import get_device
    return get_device() == 'cpu'


def _info(msg: str):
    from mmengine.logging import print_log
    print_log(f'segext.compat: {msg}', logger='current')


def cpu_backend(backend: str) -> str:
    """The torch.distributed backend to use on a machine without CUDA."""
    if backend in _ACCEL_BACKENDS:
        _info(f'no CUDA device: torch.distributed backend {backend!r} -> '
              f"'gloo' (CPU training)")
        return 'gloo'
    return backend


def _init_cpu_process_group(backend, **kwargs):
    from torch import distributed as torch_dist
    torch_dist.init_process_group(backend=cpu_backend(backend), **kwargs)


def _init_dist_pytorch_cpu(backend, init_backend='torch', **kwargs):
    """``torchrun``: RANK/WORLD_SIZE/MASTER_* are in the environment."""
    _init_cpu_process_group(backend, **kwargs)


def _init_dist_slurm_cpu(backend, port=None, init_backend='torch', **kwargs):
    """``srun``: upstream's environment set-up, without the device."""
    import os
    import subprocess
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    node_list = os.environ['SLURM_NODELIST']
    local_rank = int(os.environ.get('SLURM_LOCALID', 0))
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1')
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['LOCAL_RANK'] = str(local_rank)
    os.environ['RANK'] = str(proc_id)
    _init_cpu_process_group(backend, **kwargs)


def _init_dist_mpi_cpu(backend, **kwargs):
    """``mpirun`` (Open MPI): upstream's environment set-up, no device."""
    import os
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        raise KeyError('The environment variable MASTER_ADDR is not set')
    os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
    os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
    os.environ.setdefault('LOCAL_RANK',
                          os.environ['OMPI_COMM_WORLD_LOCAL_RANK'])
    _init_cpu_process_group(backend, **kwargs)


def _runtime_choice(upstream, cpu_version):
    """Call ``cpu_version`` without an accelerator, else ``upstream``."""
    import functools

    @functools.wraps(upstream)
    def init(backend, *args, **kwargs):
        torch_init = kwargs.get('init_backend', 'torch') == 'torch'
        if torch_init and _no_accelerator():
            return cpu_version(backend, *args, **kwargs)
        return upstream(backend, *args, **kwargs)

    init.__segext_upstream__ = upstream
    return init


def _patch_init_dist():
    if 'init_dist' in _APPLIED:
        return
    from mmengine.dist import utils as dist_utils

    # ``init_dist`` looks these up as module globals at call time.
    for name, cpu_version in (('_init_dist_pytorch', _init_dist_pytorch_cpu),
                              ('_init_dist_slurm', _init_dist_slurm_cpu),
                              ('_init_dist_mpi', _init_dist_mpi_cpu)):
        setattr(dist_utils, name,
                _runtime_choice(getattr(dist_utils, name), cpu_version))
    _APPLIED.add('init_dist')


def cpu_model_wrapper_cfg(model_wrapper_cfg, find_unused_parameters=False):
    """``model_wrapper_cfg`` for a CPU module: upstream's defaults, but
    ``device_ids=None`` for DistributedDataParallel subclasses."""
    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel
    if model_wrapper_cfg is None:
        # upstream's defaults for model_wrapper_cfg=None
        cfg = dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=find_unused_parameters)
    else:
        cfg = dict(model_wrapper_cfg)
        cfg.setdefault('type', 'MMDistributedDataParallel')
    wrapper = cfg['type']
    if isinstance(wrapper, str):
        wrapper = MODEL_WRAPPERS.get(wrapper)
    if isinstance(wrapper, type) and issubclass(wrapper,
                                                DistributedDataParallel):
        cfg['device_ids'] = None  # the config's value wins over default_args
    return cfg


def _patch_wrap_model():
    if 'wrap_model' in _APPLIED:
        return
    import functools

    from mmengine.model import is_model_wrapper
    from mmengine.runner import Runner
    upstream = Runner.wrap_model

    @functools.wraps(upstream)
    def wrap_model(self, model_wrapper_cfg, model):
        if (self.distributed and not is_model_wrapper(model)
                and _no_accelerator()):
            model_wrapper_cfg = cpu_model_wrapper_cfg(
                model_wrapper_cfg,
                self.cfg.get('find_unused_parameters', False))
            if 'device_ids' in model_wrapper_cfg:
                _info('no CUDA device: DistributedDataParallel wraps the CPU '
                      'model with device_ids=None')
        return upstream(self, model_wrapper_cfg, model)

    wrap_model.__segext_upstream__ = upstream
    Runner.wrap_model = wrap_model
    _APPLIED.add('wrap_model')


class _CPUSyncBatchNorm(torch.autograd.Function):
    """Synchronised batch norm for CPU tensors over any process group (gloo).

    The maths of torch's CUDA ``SyncBatchNorm``: the forward all-reduces the
    per-channel sum, sum of squares and count (float64); the backward
    all-reduces ``sum(dy)`` and ``sum(dy * (x - mean))`` for the input
    gradient, while ``weight``/``bias`` gradients stay local (DDP averages
    them), so N processes x batch b equal one process x batch N*b.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps,
                momentum, group):
        from torch import distributed as torch_dist
        dims = [0] + list(range(2, x.dim()))
        count = x.numel() // x.size(1)
        x64 = x.detach().double()
        stats = torch.cat([
            x64.sum(dims), (x64 * x64).sum(dims),
            x64.new_tensor([float(count)])
        ])
        torch_dist.all_reduce(stats, group=group)
        channels = x.size(1)
        total = stats[-1]
        if total < 2:
            raise ValueError('Expected more than 1 value per channel when '
                             f'training, got {int(total)} in the process '
                             'group')
        mean64 = stats[:channels] / total
        var64 = (stats[channels:2 * channels] / total - mean64 * mean64)
        var64 = var64.clamp_(min=0)
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(
                mean64.to(running_mean.dtype), alpha=momentum)
        if running_var is not None:
            unbiased = var64 * (total / (total - 1))
            running_var.mul_(1 - momentum).add_(
                unbiased.to(running_var.dtype), alpha=momentum)
        shape = [1, channels] + [1] * (x.dim() - 2)
        mean = mean64.to(x.dtype).view(shape)
        invstd = (var64 + eps).rsqrt().to(x.dtype).view(shape)
        out = (x - mean) * invstd
        if weight is not None:
            out = out * weight.view(shape)
        if bias is not None:
            out = out + bias.view(shape)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.group, ctx.total, ctx.dims = group, total, dims
        return out

    @staticmethod
    def backward(ctx, grad_out):
        from torch import distributed as torch_dist
        x, weight, mean, invstd = ctx.saved_tensors
        dims, shape = ctx.dims, mean.shape
        xmu = x - mean
        sum_dy = grad_out.sum(dims)
        sum_dy_xmu = (grad_out * xmu).sum(dims)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            both = torch.cat([sum_dy, sum_dy_xmu]).double()
            torch_dist.all_reduce(both, group=ctx.group)
            both = (both / ctx.total).to(x.dtype)
            mean_dy, mean_dy_xmu = both.view(2, *shape).unbind(0)
            scale = invstd if weight is None else invstd * weight.view(shape)
            grad_x = (grad_out - mean_dy -
                      xmu * invstd * invstd * mean_dy_xmu) * scale
        if weight is not None and ctx.needs_input_grad[1]:
            grad_weight = sum_dy_xmu * invstd.view(-1)
        if ctx.needs_input_grad[2]:
            grad_bias = sum_dy
        return grad_x, grad_weight, grad_bias, None, None, None, None, None


def _sync_batchnorm_forward_cpu(self, input):
    """``SyncBatchNorm.forward`` for a CPU input in training under an
    initialised process group; mirrors torch 2.13's forward."""
    import torch.nn.functional as F
    from torch import distributed as torch_dist
    self._check_input_dim(input)
    self._check_non_zero_input_channels(input)
    momentum = 0.0 if self.momentum is None else self.momentum
    if self.track_running_stats:
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average
            momentum = 1.0 / self.num_batches_tracked.item()
    running_mean = self.running_mean if self.track_running_stats else None
    running_var = self.running_var if self.track_running_stats else None
    group = self.process_group or torch_dist.group.WORLD
    if torch_dist.get_world_size(group) < 2:
        return F.batch_norm(input, running_mean, running_var, self.weight,
                            self.bias, True, momentum, self.eps)
    if 'syncbn_cpu_logged' not in _APPLIED:
        _APPLIED.add('syncbn_cpu_logged')
        _info('SyncBatchNorm on CPU: batch statistics are all-reduced over '
              f'the {torch_dist.get_backend(group)!r} process group')
    return _CPUSyncBatchNorm.apply(input, self.weight, self.bias,
                                   running_mean, running_var, self.eps,
                                   momentum, group)


def _patch_sync_batchnorm():
    if 'sync_bn' in _APPLIED:
        return
    import functools

    from torch import distributed as torch_dist
    upstream = torch.nn.SyncBatchNorm.forward

    @functools.wraps(upstream)
    def forward(self, input):
        if (input.device.type == 'cpu' and self.training
                and torch_dist.is_available()
                and torch_dist.is_initialized()):
            return _sync_batchnorm_forward_cpu(self, input)
        return upstream(self, input)

    forward.__segext_upstream__ = upstream
    torch.nn.SyncBatchNorm.forward = forward

    # DDP's constructor refuses SyncBatchNorm in a CPU module (a pure check,
    # ``_passing_sync_batchnorm_handle``); the forward above supports it.
    from torch.nn.parallel import DistributedDataParallel
    upstream_check = DistributedDataParallel._passing_sync_batchnorm_handle

    @functools.wraps(upstream_check)
    def _passing_sync_batchnorm_handle(self, module):
        if self.device_type != 'cpu':
            upstream_check(self, module)

    _passing_sync_batchnorm_handle.__segext_upstream__ = upstream_check
    DistributedDataParallel._passing_sync_batchnorm_handle = (
        _passing_sync_batchnorm_handle)
    _APPLIED.add('sync_bn')


# ---------------------------------------------------------------------------
# 3. Checkpoints that survive a kill (Slurm preemption, scancel, OOM killer).
#
# mmengine 0.10.7 writes checkpoints in place: ``save_checkpoint`` ->
# ``LocalBackend.put`` does ``open(path, 'wb').write(...)``, so a SIGTERM or
# SIGKILL during the write leaves a truncated ``iter_N.pth``.  With
# ``max_keep_ckpts`` the CheckpointHook also deletes the outdated checkpoint
# BEFORE writing the new one (with ``max_keep_ckpts=1`` a kill in between
# leaves nothing to resume from), and it rewrites ``work_dir/last_checkpoint``
# in place (a kill between truncate and write leaves it empty, and
# ``--resume`` then fails on the path '').  Fixes:
#   * ``LocalBackend.put``/``put_text`` write a temp file in the same
#     directory, fsync it and ``os.replace`` it over the target (atomic on
#     POSIX): a reader sees the old file or the new one, never a torn one,
#     even after a node crash;
#   * ``CheckpointHook._save_checkpoint_with_step`` removes outdated
#     checkpoints only after the new one is on disk (and the temp files a
#     killed save left behind);
#   * ``find_latest_checkpoint`` falls back to the newest ``iter_*.pth`` /
#     ``epoch_*.pth`` of the work dir when ``last_checkpoint`` is empty or
#     names a missing file (every file there is complete, see above).
# Remove when mmengine writes checkpoints atomically (not up to 0.10.7).
# ---------------------------------------------------------------------------
def atomic_write(filepath, data, mode: str = 'wb', encoding=None):
    """Write ``data`` to ``filepath`` atomically (temp file + os.replace)."""
    import os
    import os.path as osp
    import uuid
    filepath = os.fspath(filepath)
    tmp = osp.join(
        osp.dirname(filepath) or '.',
        f'.{osp.basename(filepath)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
    try:
        with open(tmp, mode.replace('w', 'x'), encoding=encoding) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def _patch_local_backend_put():
    if 'atomic_put' in _APPLIED:
        return
    import os.path as osp

    import mmengine
    from mmengine.fileio.backends import LocalBackend

    def put(self, obj, filepath):
        """Write bytes to ``filepath`` atomically (segext.compat)."""
        mmengine.mkdir_or_exist(osp.dirname(filepath))
        atomic_write(filepath, obj, 'wb')

    def put_text(self, obj, filepath, encoding='utf-8'):
        """Write text to ``filepath`` atomically (segext.compat)."""
        mmengine.mkdir_or_exist(osp.dirname(filepath))
        atomic_write(filepath, obj, 'w', encoding=encoding)

    put.__segext_upstream__ = LocalBackend.put
    put_text.__segext_upstream__ = LocalBackend.put_text
    LocalBackend.put, LocalBackend.put_text = put, put_text
    _APPLIED.add('atomic_put')


class _DeferRemovals:
    """File-backend proxy that records ``remove``/``rmtree`` calls."""

    def __init__(self, backend):
        self._backend, self.removals = backend, []

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def remove(self, path):
        self.removals.append(('remove', path))

    def rmtree(self, path):
        self.removals.append(('rmtree', path))


def _remove_stale_temp_files(out_dir):
    """Delete the temp files of :func:`atomic_write` that a killed writer
    left in a local ``out_dir``.  Only the main process writes checkpoints
    and it has just finished, so any left in ``out_dir`` are stale."""
    import glob
    import os
    import os.path as osp
    from mmengine.dist import is_main_process
    if not (is_main_process() and isinstance(out_dir, str)
            and osp.isdir(out_dir)):
        return
    for tmp in glob.glob(osp.join(out_dir, '.*.pth.*.tmp')):
        try:
            os.remove(tmp)
        except OSError:
            pass


def _patch_checkpoint_hook():
    if 'ckpt_hook' in _APPLIED:
        return
    import functools

    from mmengine.hooks import CheckpointHook
    upstream = CheckpointHook._save_checkpoint_with_step

    @functools.wraps(upstream)
    def _save_checkpoint_with_step(self, runner, step, meta):
        backend = self.file_backend
        deferred = _DeferRemovals(backend)
        self.file_backend = deferred
        try:
            upstream(self, runner, step, meta)
        finally:
            self.file_backend = backend
        for op, path in deferred.removals:  # the new checkpoint is on disk
            getattr(backend, op)(path)
        _remove_stale_temp_files(self.out_dir)

    _save_checkpoint_with_step.__segext_upstream__ = upstream
    CheckpointHook._save_checkpoint_with_step = _save_checkpoint_with_step
    _APPLIED.add('ckpt_hook')


def find_latest_checkpoint(path: str):
    """mmengine's ``find_latest_checkpoint``, robust to an empty or dangling
    ``last_checkpoint`` (then: the newest ``iter_*``/``epoch_*`` file)."""
    import glob
    import os.path as osp
    import re
    from mmengine.logging import print_log
    save_file = osp.join(path, 'last_checkpoint')
    if not osp.exists(save_file):
        print_log('Did not find last_checkpoint to be resumed.')
        return None
    with open(save_file) as f:
        last_saved = f.read().strip()
    if last_saved and (osp.isfile(last_saved) or '://' in last_saved):
        return last_saved
    found = []
    for ckpt in glob.glob(osp.join(path, '*.pth')):
        m = re.fullmatch(r'(?:iter|epoch)_(\d+)\.pth', osp.basename(ckpt))
        if m:
            found.append((int(m.group(1)), ckpt))
    latest = max(found)[1] if found else None
    print_log(
        f'segext.compat: {save_file} names {last_saved or "nothing"!r}, '
        f'which does not exist; resuming from the newest checkpoint in '
        f'{path}: {latest}', logger='current', level=30)
    return latest


def _patch_find_latest_checkpoint():
    if 'find_latest' in _APPLIED:
        return
    import mmengine.runner
    from mmengine.runner import _flexible_runner, checkpoint, runner
    find_latest_checkpoint.__segext_upstream__ = (
        checkpoint.find_latest_checkpoint)
    # every module that imported the name (``from .checkpoint import ...``)
    for module in (checkpoint, runner, _flexible_runner, mmengine.runner):
        module.find_latest_checkpoint = find_latest_checkpoint
    _APPLIED.add('find_latest')


def apply():
    """Apply every shim (idempotent)."""
    _patch_checkpoint_loader()
    _patch_init_dist()
    _patch_wrap_model()
    _patch_sync_batchnorm()
    _patch_local_backend_put()
    _patch_checkpoint_hook()
    _patch_find_latest_checkpoint()
