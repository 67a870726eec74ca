"""``CPUDistributedDataParallel``: mmengine's DDP wrapper for CPU processes.

mmengine 0.10.7's ``Runner.wrap_model`` builds
``MMDistributedDataParallel(device_ids=[LOCAL_RANK])``, which torch's DDP
rejects for a CPU module, and DDP's constructor refuses ``nn.SyncBatchNorm``
in a CPU module (torch has no CPU sync kernels).  This wrapper passes
``device_ids=None`` and first swaps every ``nn.SyncBatchNorm`` for
:class:`segext.models.layers.CPUSyncBatchNorm` (same parameters, buffers and
state-dict keys, statistics all-reduced over gloo).
:class:`segext.engine.SegextRunner` selects it on a machine without an
accelerator; on GPUs the runner keeps upstream's wrapper.  Remove when
mmengine/torch support DDP + SyncBN on CPU.
"""
from __future__ import annotations

from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch.nn import SyncBatchNorm

from ..models.layers.sync_bn import CPUSyncBatchNorm

__all__ = ['CPUDistributedDataParallel']


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` of a CPU module (``device_ids=None``)
    whose ``nn.SyncBatchNorm`` layers synchronise over the process group.
    Takes MMDistributedDataParallel's arguments; ``device_ids`` and
    ``output_device`` must be None (or absent)."""

    def __init__(self, module, detect_anomalous_params: bool = False,
                 device_ids=None, output_device=None, **kwargs):
        if device_ids is not None or output_device is not None:
            raise ValueError(
                'CPUDistributedDataParallel wraps a CPU module: device_ids '
                f'and output_device must be None, got {device_ids!r} and '
                f'{output_device!r}')
        count = sum(1 for m in module.modules()
                    if isinstance(m, SyncBatchNorm))
        module = CPUSyncBatchNorm.convert_sync_batchnorm(module)
        if count:
            print_log(f'SyncBatchNorm -> CPUSyncBatchNorm ({count} '
                      'layers): batch statistics are all-reduced over the '
                      'process group', logger='current')
        super().__init__(
            module=module, detect_anomalous_params=detect_anomalous_params,
            device_ids=None, **kwargs)
