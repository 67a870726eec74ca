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
(:mod:`segext.ops.chunk_threads`); since then, on that AVX2 CPU,
``torch.mm`` is as fast or faster for the deformable conv's forward GEMM
(docs/deform_conv.md, "Eighth round") and its weight gradient -- there,
``(O, L) @ (L, K·C)`` with the columns as the right operand, oneDNN
reorders the columns before multiplying ("Seventh round"); the column
gradient ``(L, O) @ (O, K·C)`` showed no difference. On an AVX-512 CPU
(an AMD EPYC of the Zen 4 generation) oneDNN runs its AVX-512 kernels
and MKL does not: there oneDNN's matmul is the faster in all three,
reorder included (docs/deform_conv.md, "Tenth round"). So the forward
GEMM and the weight gradient go through :func:`gemm_nt` and
:func:`gemm_tn`, which choose oneDNN where :func:`onednn_preferred`
(float32 on a CPU whose ATen capability is AVX-512) and ``torch.mm``
otherwise; the column gradient is :func:`mm_nt`, oneDNN wherever it runs.
Each choice is fixed per process, so results stay bit-reproducible on a
machine; ``ATEN_CPU_CAPABILITY=avx2`` selects the AVX2 rule.
"""
from typing import Optional

import torch
from torch import Tensor

__all__ = [
    'gemm_nt', 'gemm_tn', 'mm_nt', 'onednn_matmul_available',
    'onednn_preferred'
]

_AVAILABLE: Optional[bool] = None
_PREFERRED: Optional[bool] = None


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
    return _torch_mm_nt(a, b, bias)


def _torch_mm_nt(a: Tensor, b: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``a @ b.T (+ bias)`` by ``torch.mm`` / ``torch.addmm`` (MKL)."""
    if bias is None:
        return torch.mm(a, b.t())
    return torch.addmm(bias, a, b.t())


def onednn_preferred() -> bool:
    """Run the GEMMs :func:`gemm_nt` and :func:`gemm_tn` on oneDNN? Yes
    where its matmul runs and ATen's CPU capability is AVX-512 (module
    docstring); checked once per process."""
    global _PREFERRED
    if _PREFERRED is None:
        _PREFERRED = onednn_matmul_available() and \
            torch.backends.cpu.get_cpu_capability().startswith('AVX512')
    return _PREFERRED


def gemm_nt(a: Tensor, b: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``a @ b.T (+ bias)`` as :func:`mm_nt`, on oneDNN only where
    :func:`onednn_preferred` (else ``torch.mm`` / ``torch.addmm``)."""
    if a.dtype == torch.float32 and onednn_preferred():
        return mm_nt(a, b, bias)
    return _torch_mm_nt(a, b, bias)


def gemm_tn(a: Tensor, b: Tensor) -> Tensor:
    """``a.T @ b`` for ``a`` (K, M), ``b`` (K, N): (M, N), contiguous.

    On oneDNN where :func:`onednn_preferred`, as ``a.T`` (copied: it is
    the small operand of the weight gradients here) times ``b`` (read as
    the transposed right operand, which oneDNN reorders as it packs it);
    else ``torch.mm``.
    """
    if a.dtype == torch.float32 and onednn_preferred():
        return mm_nt(a.t(), b.t())
    return torch.mm(a.t(), b)
