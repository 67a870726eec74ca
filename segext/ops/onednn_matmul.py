"""Float32 matrix products on oneDNN, for the chunked CPU ops' GEMMs.

``torch.mm`` on CPU is MKL's sgemm, which picks slower code paths on
non-Intel CPUs; oneDNN (which PyTorch ships for its CPU convolutions) runs
its AVX2 kernels there: on the project's AMD EPYC (AVX2 + FMA, no
AVX-512) a (1746 × 256) · (256 × 2304)
product -- one chunk of the deformable conv's backward -- ran 2.3× faster
through oneDNN's matmul than through ``torch.mm``, one thread each
(docs/deform_conv.md, "Third round"). :func:`mm_nt` uses oneDNN's matmul
(``torch.ops.mkldnn._linear_pointwise``: the op PyTorch's own compiler
emits for ``F.linear`` on CPU, here on plain dense tensors) where it is
available and ``torch.mm`` otherwise: float64, torch built without oneDNN,
or an op that fails its one-time check.

That comparison ran before each worker's MKL was limited to one thread
(:mod:`segext.ops.chunk_threads`); since then ``torch.mm`` is as fast or
faster for the deformable conv's forward GEMM (docs/deform_conv.md,
"Eighth round") and its weight gradient -- there, ``(O, L) @ (L, K·C)``
with the columns as the right operand, oneDNN reorders the columns before
multiplying ("Seventh round") -- so those call it directly; the column
gradient ``(L, O) @ (O, K·C)`` stays here (no difference measured).
"""
from typing import Optional

import torch
from torch import Tensor

__all__ = ['mm_nt', 'onednn_matmul_available']

_AVAILABLE: Optional[bool] = None


def onednn_matmul_available() -> bool:
    """Can oneDNN's matmul run here, and does it agree with ``torch.mm``?

    Checked once per process on a small product.
    """
    global _AVAILABLE
    if _AVAILABLE is None:
        _AVAILABLE = _check()
    return _AVAILABLE


def _check() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        op = torch.ops.mkldnn._linear_pointwise
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(37, 19, generator=gen)
        b = torch.randn(23, 19, generator=gen)
        got = op(a, b, None, 'none', [], '')
    except (AttributeError, RuntimeError):
        return False
    return torch.allclose(got, torch.mm(a, b.t()), rtol=1e-4, atol=1e-4)


def mm_nt(a: Tensor, b: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``a @ b.T (+ bias)`` for ``a`` (M, K), ``b`` (N, K), ``bias`` (N,):
    (M, N), contiguous.

    oneDNN's matmul for float32 (``a`` made contiguous first; ``b`` may
    be any strided view, oneDNN reorders it as it packs the weights), else
    ``torch.mm`` / ``torch.addmm``.
    """
    if a.dtype == torch.float32 and onednn_matmul_available():
        return torch.ops.mkldnn._linear_pointwise(
            a.contiguous(), b, None if bias is None else bias.contiguous(),
            'none', [], '')
    if bias is None:
        return torch.mm(a, b.t())
    return torch.addmm(bias, a, b.t())
