"""Synchronised batch norm for CPU processes (gloo): ``CPUSyncBatchNorm``.

torch 2.13's ``nn.SyncBatchNorm`` has no CPU path: its forward raises
"SyncBatchNorm expected input tensor to be on GPU" under a process group
(there are no CPU kernels for ``batch_norm_stats``/``batch_norm_gather_stats``)
and DDP's constructor refuses it in a CPU module.  ``CPUSyncBatchNorm`` is a
separate module (not a subclass of ``nn.SyncBatchNorm``, so DDP accepts it)
with the same parameters and buffers, hence the same state dict:
:class:`segext.engine.CPUDistributedDataParallel` swaps every
``nn.SyncBatchNorm`` for it before DDP sees the model, and a config can name
it directly as ``norm_cfg=dict(type='CPUSyncBN')``.  Remove when torch
synchronises batch norm over gloo itself.

The maths is that of the CUDA kernels (Ioffe & Szegedy 2015, Alg. 1 over the
union of the ranks' batches): see :class:`_AllReduceBatchNorm`.
"""
from __future__ import annotations

import torch
from mmengine.registry import MODELS
from torch import distributed as torch_dist
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['CPUSyncBatchNorm']


class _AllReduceBatchNorm(torch.autograd.Function):
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


@MODELS.register_module('CPUSyncBN')
class CPUSyncBatchNorm(_BatchNorm):
    """Batch norm whose training statistics span every rank of
    ``process_group`` (default: the world), for CPU tensors of any rank >= 2.

    Outside training, without a process group or with a group of one it is
    ``nn.BatchNorm*d``.  ``N`` processes x batch ``b`` give the outputs and
    gradients of one process x batch ``N*b`` (up to float summation order).
    """

    _abbr_ = 'bn'

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, process_group=None, device=None,
                 dtype=None):
        super().__init__(num_features, eps, momentum, affine,
                         track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(
                f'expected at least 2D input (got {input.dim()}D input)')

    def _group_size(self) -> int:
        if not (torch_dist.is_available() and torch_dist.is_initialized()):
            return 1
        return torch_dist.get_world_size(self._group())

    def _group(self):
        return self.process_group or torch_dist.group.WORLD

    def forward(self, input):
        self._check_input_dim(input)
        if not self.training or self._group_size() < 2:
            return super().forward(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / self.num_batches_tracked.item()
        return _AllReduceBatchNorm.apply(
            input, self.weight, self.bias,
            self.running_mean if self.track_running_stats else None,
            self.running_var if self.track_running_stats else None, self.eps,
            momentum, self._group())

    @classmethod
    def convert_sync_batchnorm(cls, module: torch.nn.Module):
        """``module`` with every ``nn.SyncBatchNorm`` replaced by a
        ``CPUSyncBatchNorm`` holding the same parameters and buffers (the
        state dict keys do not change)."""
        if isinstance(module, torch.nn.SyncBatchNorm):
            out = cls(module.num_features, module.eps, module.momentum,
                      module.affine, module.track_running_stats,
                      module.process_group)
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
            if module.track_running_stats:
                out.running_mean = module.running_mean
                out.running_var = module.running_var
                out.num_batches_tracked = module.num_batches_tracked
            out.train(module.training)
            return out
        for name, child in module.named_children():
            converted = cls.convert_sync_batchnorm(child)
            if converted is not child:
                module.add_module(name, converted)
        return module
