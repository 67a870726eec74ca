"""segext.ops.native_build (compile, cache, fall back), the C++ sampling
kernels against the PyTorch path, and segext.ops.onednn_matmul."""
import os
import warnings

import pytest
import torch

from segext.ops import deform_conv2d_cpu
from segext.ops import deform_conv_cpu as dc
from segext.ops import native_build
from segext.ops import onednn_matmul
from segext.ops.onednn_matmul import (gemm_nt, gemm_tn, mm_nt,
                                        onednn_matmul_available)

needs_compiler = pytest.mark.skipif(native_build._compiler() is None,
                                    reason='no C++ compiler')


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty kernel cache and no library loaded yet in this process."""
    monkeypatch.setenv('SEGEXT_CACHE_DIR', str(tmp_path))
    monkeypatch.setattr(native_build, '_LOADED', {})
    return tmp_path / 'kernels'


def built(cache):
    return sorted(p.name for p in cache.iterdir() if p.suffix == '.so')


@needs_compiler
def test_builds_once_then_uses_the_cache(fresh, monkeypatch):
    lib = native_build.load_kernels('deform_sampling')
    assert lib is not None and hasattr(lib, 'segext_dcn_columns_f32')
    (name, ) = built(fresh)
    mtime = (fresh / name).stat().st_mtime_ns
    # a new process (nothing loaded) finds the build: no compiler call
    monkeypatch.setattr(native_build, '_LOADED', {})
    monkeypatch.setattr(native_build.subprocess, 'run', None)
    monkeypatch.setattr(native_build, '_key', lambda s, c: name.split(
        '-')[-1][:-3])
    assert native_build.load_kernels('deform_sampling') is not None
    assert built(fresh) == [name]
    assert (fresh / name).stat().st_mtime_ns == mtime


@needs_compiler
def test_a_new_source_replaces_the_old_build_of_this_cpu(fresh, monkeypatch):
    native_build.load_kernels('deform_sampling')
    (old, ) = built(fresh)
    other_cpu = fresh / 'deform_sampling-00000000-0123456789abcdef.so'
    other_cpu.write_bytes(b'')
    monkeypatch.setattr(native_build, '_LOADED', {})
    monkeypatch.setattr(native_build, 'FLAGS', native_build.FLAGS + ('-g0', ))
    native_build.load_kernels('deform_sampling')
    names = built(fresh)
    assert old not in names and other_cpu.name in names and len(names) == 2


def test_no_compiler_warns_once_and_the_op_still_runs(fresh, monkeypatch):
    monkeypatch.setattr(native_build, '_compiler', lambda: None)
    with pytest.warns(UserWarning, match='no C.. compiler found'):
        assert native_build.load_kernels('deform_sampling') is None
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert native_build.load_kernels('deform_sampling') is None
    x = torch.randn(1, 3, 5, 6, requires_grad=True)
    offset = torch.randn(1, 18, 5, 6)
    weight = torch.randn(4, 3, 3, 3)
    deform_conv2d_cpu(x, offset, weight, None, 1, 1).sum().backward()
    assert x.grad.shape == x.shape


def test_a_failing_compiler_is_reported(fresh, monkeypatch):
    monkeypatch.setenv('CXX', 'false')
    with pytest.warns(UserWarning, match="false failed on .*deform_sampling"):
        assert native_build.load_kernels('deform_sampling') is None
    assert built(fresh) == []  # no half-written library left


def test_opting_out_is_silent(fresh, monkeypatch):
    monkeypatch.setenv('SEGEXT_NATIVE', '0')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert native_build.load_kernels('deform_sampling') is None
    assert not fresh.exists()


@needs_compiler
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_native_and_torch_sampling_agree(monkeypatch, dtype):
    """A P4-like layer with offsets reaching outside the map, 2 deformable
    groups and 2 conv groups, channels-last: both paths, same numbers."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 13, 17, generator=g, dtype=dtype).contiguous(
        memory_format=torch.channels_last)
    offset = torch.randn(2, 36, 13, 17, generator=g, dtype=dtype) * 3
    weight = torch.randn(32, 32, 3, 3, generator=g, dtype=dtype)
    bias = torch.randn(32, generator=g, dtype=dtype)

    def run():
        leaves = [t.clone().requires_grad_() for t in (x, offset, weight,
                                                       bias)]
        out = deform_conv2d_cpu(*leaves, 1, 1, 1, 2, 2, chunk_bytes=4096)
        grads = torch.autograd.grad(out, leaves, torch.ones_like(out))
        return (out, ) + grads

    native = run()
    monkeypatch.setattr(dc, 'native_sampling_available', lambda: False)
    reference = run()
    tol = 1e-4 if dtype == torch.float32 else 1e-11
    for a, b in zip(native, reference):
        scale = b.abs().max()
        assert ((a - b).abs().max() / scale).item() < tol


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_mm_nt(dtype):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 70, generator=g, dtype=dtype)
    cols = torch.randn(70, 30, generator=g, dtype=dtype)  # b as a view
    bias = torch.randn(30, generator=g, dtype=dtype)
    ref = a.double() @ cols.double()
    for got, want in ((mm_nt(a, cols.t()), ref),
                      (mm_nt(a.t().contiguous().t(), cols.t(), bias),
                       ref + bias.double())):
        assert got.shape == (50, 30) and got.is_contiguous()
        assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('preferred', [True, False])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_gemm_nt_and_tn_on_either_backend(preferred, dtype, monkeypatch):
    monkeypatch.setattr(onednn_matmul, '_PREFERRED', preferred)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 70, generator=g, dtype=dtype)
    b = torch.randn(30, 70, generator=g, dtype=dtype)
    rows = torch.randn(40, 64, generator=g, dtype=dtype)[:, 7:57]  # strided
    bias = torch.randn(30, generator=g, dtype=dtype)
    for got, want in ((gemm_nt(a, b), a.double() @ b.double().t()),
                      (gemm_nt(a, b, bias),
                       a.double() @ b.double().t() + bias.double()),
                      (gemm_tn(rows, a[:40]),
                       rows.double().t() @ a[:40].double())):
        assert got.is_contiguous() and got.dtype == dtype
        assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('capability,preferred', [('AVX512', True),
                                                  ('AVX2', False),
                                                  ('DEFAULT', False)])
def test_onednn_preferred_on_avx512_cpus(capability, preferred,
                                         monkeypatch):
    monkeypatch.setattr(onednn_matmul, '_PREFERRED', None)
    monkeypatch.setattr(torch.backends.cpu, 'get_cpu_capability',
                        lambda: capability)
    assert onednn_matmul.onednn_preferred() == (
        preferred and onednn_matmul_available())


def test_onednn_matmul_is_used_where_torch_has_it():
    assert onednn_matmul_available() == torch.backends.mkldnn.is_available()


def test_package_ships_the_kernel_source():
    assert os.path.isfile(
        os.path.join(native_build.CSRC, 'deform_sampling.cpp'))


@needs_compiler
def test_an_unwritable_cache_falls_back_to_the_temp_dir(fresh, monkeypatch,
                                                        tmp_path):
    blocked = tmp_path / 'file'
    blocked.write_text('')  # a file where the cache directory should be
    monkeypatch.setenv('SEGEXT_CACHE_DIR', str(blocked))
    monkeypatch.setattr(native_build.tempfile, 'tempdir', str(tmp_path))
    assert native_build.load_kernels('deform_sampling') is not None
    assert built(tmp_path / f'segext-kernels-{os.getuid()}')
