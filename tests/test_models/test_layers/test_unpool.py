"""segext.models.layers.unpool: 2-bit compact max-pooling indices and the
matching max-unpooling, checked against a naive reference and against
torch's own max_pool2d / max_unpool2d."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segext.models.layers import (CompactMaxPool2d, CompactMaxUnpool2d,
                                  PoolIndices, max_pool2d_compact,
                                  max_unpool2d_compact)
from segext.models.layers.unpool import (pack_window_codes, pooled_size,
                                         unpack_window_codes)

pytestmark = pytest.mark.usefixtures('one_thread')


def naive_pool(x: np.ndarray, ceil_mode: bool):
    """Reference: loop over windows, FIRST maximum in row-major order."""
    n, c, h, w = x.shape
    hp, wp = pooled_size(h, ceil_mode), pooled_size(w, ceil_mode)
    pooled = np.zeros((n, c, hp, wp), x.dtype)
    rows = np.zeros((n, c, hp, wp), np.int64)
    cols = np.zeros((n, c, hp, wp), np.int64)
    for b in range(n):
        for ch in range(c):
            for i in range(hp):
                for j in range(wp):
                    best = None
                    for r in range(2 * i, min(2 * i + 2, h)):
                        for q in range(2 * j, min(2 * j + 2, w)):
                            if best is None or x[b, ch, r, q] > best:
                                best, rows[b, ch, i, j], cols[b, ch, i, j] = \
                                    x[b, ch, r, q], r, q
                    pooled[b, ch, i, j] = best
    return pooled, rows, cols


def random_case(gen, ties: bool):
    n, c = (int(v) for v in torch.randint(1, 3, (2, ), generator=gen))
    h, w = (int(v) for v in torch.randint(2, 12, (2, ), generator=gen))
    if ties:  # few distinct values: most windows have tied maxima
        return torch.randint(0, 3, (n, c, h, w), generator=gen).double()
    return torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize('ceil_mode', [True, False])
@pytest.mark.parametrize('ties', [True, False])
def test_unpool_puts_every_max_back_at_its_source(ceil_mode, ties):
    gen = torch.Generator().manual_seed(int(ceil_mode) * 2 + int(ties))
    odd_seen = False
    for _ in range(15):
        x = random_case(gen, ties)
        h, w = x.shape[-2:]
        odd_seen |= h % 2 == 1 or w % 2 == 1
        pooled, indices = max_pool2d_compact(x, ceil_mode=ceil_mode)
        size = indices.pre_pool_size
        ref_pooled, rows, cols = naive_pool(x.numpy(), ceil_mode)
        np.testing.assert_array_equal(pooled.numpy(), ref_pooled)
        assert tuple(size) == (h, w)
        # decode the packed bits -> positions == the reference's first max
        codes = indices.window_codes().numpy()
        hp, wp = pooled.shape[-2:]
        np.testing.assert_array_equal(
            2 * np.arange(hp)[:, None] + codes // 2, rows)
        np.testing.assert_array_equal(
            2 * np.arange(wp)[None, :] + codes % 2, cols)
        # unpool: each max exactly at its source position, zeros elsewhere
        out = max_unpool2d_compact(pooled, indices, size).numpy()
        expected = np.zeros(x.shape, x.numpy().dtype)
        b, ch, i, j = np.indices(pooled.shape)
        expected[b, ch, rows, cols] = ref_pooled
        np.testing.assert_array_equal(out, expected)
    assert odd_seen


@pytest.mark.parametrize('ceil_mode', [True, False])
def test_compact_indices_round_trip_to_torch_flat_indices(ceil_mode):
    gen = torch.Generator().manual_seed(7)
    for k in range(12):
        x = random_case(gen, ties=k % 2 == 0).float()
        if k % 3 == 0:
            x = x.to(memory_format=torch.channels_last)
        pooled, indices = max_pool2d_compact(x, ceil_mode=ceil_mode)
        size = indices.pre_pool_size
        ref, flat = F.max_pool2d(x, 2, 2, ceil_mode=ceil_mode,
                                 return_indices=True)
        assert torch.equal(pooled, ref)
        assert indices.flat_indices().dtype == torch.int64
        assert torch.equal(indices.flat_indices(), flat)
        assert torch.equal(
            max_unpool2d_compact(pooled, indices),
            F.max_unpool2d(ref, flat, 2, 2, output_size=size))


def test_nan_windows_point_where_torch_points():
    x = torch.tensor([[[[float('nan'), 1., 5., 5.],
                        [float('nan'), 0., float('nan'), 2.]]]])
    pooled, indices = max_pool2d_compact(x)
    ref, flat = F.max_pool2d(x, 2, 2, return_indices=True)
    assert torch.equal(indices.flat_indices(), flat)
    assert torch.isnan(pooled).all() and torch.isnan(ref).all()


def test_packed_storage_is_ceil_quarter_byte_per_element():
    for shape in [(1, 1, 1, 1), (1, 1, 1, 3), (2, 3, 5, 7), (4, 64, 6, 8)]:
        x = torch.randn(shape[0], shape[1], 2 * shape[2], 2 * shape[3])
        pooled, indices = max_pool2d_compact(x)
        assert pooled.shape == shape
        assert indices.data.dtype == torch.uint8 and indices.data.dim() == 1
        assert indices.nbytes == math.ceil(math.prod(shape) / 4)
        _, int64 = CompactMaxPool2d(compact=False)(x)
        assert int64.nbytes == 8 * math.prod(shape)
    # SegNet at 360x480, batch 4: exactly 1/32 of torch's int64 indices
    numel = sum(4 * c * h * w for c, (h, w) in zip(
        (64, 128, 256, 512, 512),
        ((180, 240), (90, 120), (45, 60), (23, 30), (12, 15))))
    assert sum(math.ceil(4 * c * h * w / 4) for c, (h, w) in zip(
        (64, 128, 256, 512, 512),
        ((180, 240), (90, 120), (45, 60), (23, 30),
         (12, 15)))) * 32 == 8 * numel


def test_packing_layout_is_the_documented_one():
    # element k -> byte k // 4, bits 2 * (k % 4): codes 0,1,2,3 | 3
    codes = torch.tensor([0, 1, 2, 3, 3], dtype=torch.uint8)
    packed = pack_window_codes(codes)
    assert packed.tolist() == [0b11100100, 0b00000011]
    assert torch.equal(unpack_window_codes(packed, (5, )), codes)
    gen = torch.Generator().manual_seed(0)
    for n in range(1, 40):
        codes = torch.randint(0, 4, (n, ), generator=gen, dtype=torch.uint8)
        packed = pack_window_codes(codes)
        expected = [sum(int(codes[k]) << 2 * (k % 4)
                        for k in range(4 * b, min(4 * b + 4, n)))
                    for b in range(math.ceil(n / 4))]
        assert packed.tolist() == expected
        assert torch.equal(unpack_window_codes(packed, (n, )), codes)
    with pytest.raises(ValueError, match='1-D uint8 tensor of 2 bytes'):
        unpack_window_codes(packed[:1], (5, ))


def test_unpool_is_deterministic_and_layouts_agree():
    x = torch.randint(0, 2, (2, 8, 45, 61)).float()  # ties everywhere
    for ceil_mode in (True, False):
        pooled, compact = CompactMaxPool2d(ceil_mode=ceil_mode)(x)
        pooled64, int64 = CompactMaxPool2d(ceil_mode=ceil_mode,
                                           compact=False)(x)
        assert compact.compact and not int64.compact
        assert torch.equal(pooled, pooled64)
        assert torch.equal(compact.window_codes(), int64.window_codes())
        unpool = CompactMaxUnpool2d()
        outs = [unpool(pooled, compact) for _ in range(3)]
        outs.append(unpool(pooled, int64))
        assert all(torch.equal(outs[0], o) for o in outs[1:])
        assert outs[0].shape[-2:] == (45, 61)


def test_gradients_flow_to_source_positions_gradcheck():
    gen = torch.Generator().manual_seed(3)
    for ceil_mode in (True, False):
        # distinct values: max-pooling is differentiable there
        x = torch.randn(1, 2, 5, 7, dtype=torch.float64, generator=gen,
                        requires_grad=True)
        pooled, indices = max_pool2d_compact(x, ceil_mode=ceil_mode)
        size = indices.pre_pool_size
        values = torch.randn(pooled.shape, dtype=torch.float64,
                             generator=gen, requires_grad=True)
        unpool = lambda v: max_unpool2d_compact(v, indices, size)  # noqa
        assert torch.autograd.gradcheck(unpool, (values, ))
        assert torch.autograd.gradgradcheck(
            unpool, (values, ), fast_mode=True)
        assert torch.autograd.gradcheck(
            lambda t: max_pool2d_compact(t, ceil_mode=ceil_mode)[0], (x, ))
        # the unpooling's gradient is the gradient read at the source
        grad_out = torch.randn(x.shape, dtype=torch.float64, generator=gen)
        max_unpool2d_compact(values, indices).backward(grad_out)
        flat = indices.flat_indices()
        expected = grad_out.flatten(2).gather(2, flat.flatten(2))
        assert torch.equal(values.grad, expected.view_as(values))


def test_bad_input_errors_name_the_value():
    x = torch.randn(1, 2, 6, 6)
    pooled, indices = max_pool2d_compact(x)
    with pytest.raises(ValueError, match=r'4-D \(N, C, H, W\).*\(6, 6\)'):
        max_pool2d_compact(torch.randn(6, 6))
    with pytest.raises(ValueError, match=r'output_size \(7, 6\).*\(6, 6\)'):
        max_unpool2d_compact(pooled, indices, (7, 6))
    with pytest.raises(ValueError, match=r'shape \(1, 3, 3, 3\).*\(1, 2, 3, '
                       r'3\)'):
        max_unpool2d_compact(torch.randn(1, 3, 3, 3), indices)
    with pytest.raises(TypeError, match='PoolIndices'):
        max_unpool2d_compact(pooled, indices.data)
    assert isinstance(indices, PoolIndices)
