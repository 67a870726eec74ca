"""Tensor ops segext implements itself (no registry entries here).

* :mod:`.deform_conv_cpu`: segext's CPU DCN v1 (forward/backward, chunking,
  ordered gradient sums), with :mod:`.deform_geometry` (shapes, sampling
  tables), :mod:`.deform_sampling` (one chunk's bilinear sampling: C++
  kernels built by :mod:`.native_build`, or PyTorch ops),
  :mod:`.onednn_matmul` (the float32 column-gradient GEMM on oneDNN) and
  :mod:`.chunk_threads` (worker threads, in-order sums);
* :mod:`.deform_conv_mmcv`: mmcv's compiled kernel + a bias;
* :mod:`.conv_cl_cpu`: a stride-1 conv on channels-last CPU input whose
  weight gradient is a GEMM (the deformable layers' offset convs);
* :mod:`.upsampled_nll`, :mod:`.roi_align_cpu`: UPSNet's full-resolution
  semantic loss and the RoIAlign of its RoI loss on CPU;
* :mod:`.tracing`: whether a graph is being recorded (trace/export).

The layer that chooses between them is
:class:`segext.models.layers.DeformConv2dWithOffset` (``'DCNv1'``).
"""
from .deform_conv_cpu import DEFAULT_CHUNK_BYTES, deform_conv2d_cpu
from .deform_conv_mmcv import deform_conv2d_mmcv
from .tracing import is_recording

__all__ = [
    'DEFAULT_CHUNK_BYTES', 'deform_conv2d_cpu', 'deform_conv2d_mmcv',
    'is_recording'
]
