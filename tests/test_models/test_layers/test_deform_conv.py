"""segext.ops.deform_conv_cpu (the CPU DCN v1 against mmcv's CPU kernel,
outputs and gradients) and segext.models.layers.deform_conv (the module, its
registration and the dispatch)."""
import math
import threading

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_conv_layer
from mmcv.ops import deform_conv2d as mmcv_deform_conv2d
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from segext.models.layers import (DeformConv2dWithOffset, deform_conv2d,
                                  select_deform_conv_impl)
from segext.ops import chunk_threads, deform_conv2d_cpu, deform_conv_mmcv
from segext.ops import deform_conv_cpu as dc
from segext.ops import onednn_matmul
from segext.ops.deform_sampling import native_sampling_available
from segext.ops.native_build import _compiler


@pytest.fixture(autouse=True, params=['native', 'torch'])
def sampling(request, monkeypatch):
    """Every test runs on both sampling paths: segext's C++ kernels and the
    pure-PyTorch fallback (``embedding_bag`` + CSR)."""
    if request.param == 'torch':
        monkeypatch.setattr(dc, 'native_sampling_available', lambda: False)
    elif not native_sampling_available():
        # a machine with a compiler must build them
        assert _compiler() is None, 'C++ kernels failed to build'
        pytest.skip('no C++ compiler: only the PyTorch path runs here')
    return request.param


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def make_case(batch=2, cin=4, cout=6, size=(7, 9), kernel=(3, 3), stride=1,
              padding=1, dilation=1, groups=1, deform_groups=1, scale=2.5,
              integer=False, dtype=torch.float64, seed=0):
    """Random input, weight, bias and offsets; offsets of ``scale`` pixels
    reach well outside the map."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    kh, kw = kernel
    s, p, d = (stride, ) * 2, (padding, ) * 2, (dilation, ) * 2
    ho, wo = out_size(h, kh, s[0], p[0], d[0]), out_size(w, kw, s[1], p[1],
                                                          d[1])
    x = torch.randn(batch, cin, h, w, generator=g, dtype=dtype)
    weight = torch.randn(cout, cin // groups, kh, kw, generator=g,
                         dtype=dtype)
    bias = torch.randn(cout, generator=g, dtype=dtype)
    offset = torch.randn(batch, deform_groups * kh * kw * 2, ho, wo,
                         generator=g, dtype=dtype) * scale
    if integer:
        offset = offset.round()
    return dict(x=x, offset=offset, weight=weight, bias=bias, stride=s,
                padding=p, dilation=d, groups=groups,
                deform_groups=deform_groups)


def out_and_grads(case, impl, chunk_bytes=dc.DEFAULT_CHUNK_BYTES):
    """(output, grads of input, offset, weight, bias) of one implementation:
    segext's CPU path or mmcv's kernel (+ bias)."""
    leaves = [case[k].clone().requires_grad_()
              for k in ('x', 'offset', 'weight', 'bias')]
    x, offset, weight, bias = leaves
    args = (case['stride'], case['padding'], case['dilation'],
            case['groups'], case['deform_groups'])
    if impl == 'segext':
        out = deform_conv2d_cpu(x, offset, weight, bias, *args,
                                chunk_bytes=chunk_bytes)
    else:
        out = mmcv_deform_conv2d(x, offset, weight, *args, False,
                                 1) + bias.view(1, -1, 1, 1)
    grad_out = torch.randn(out.shape, dtype=out.dtype,
                           generator=torch.Generator().manual_seed(1))
    return (out, ) + torch.autograd.grad(out, leaves, grad_out)


def run_both(case, chunk_bytes=dc.DEFAULT_CHUNK_BYTES):
    """:func:`out_and_grads` of segext's CPU path and of mmcv's kernel."""
    return [out_and_grads(case, impl, chunk_bytes)
            for impl in ('segext', 'mmcv')]


def assert_close_rel(ours, ref, rtol, name):
    # relative to the tensor's scale: elementwise relative error is
    # meaningless for entries that cancel to ~0
    scale = ref.abs().max().clamp(min=1e-12)
    err = ((ours - ref).abs().max() / scale).item()
    assert err <= rtol, f'{name}: max error {err:.2e} x scale > {rtol:.0e}'


NAMES = ('output', 'grad input', 'grad offset', 'grad weight', 'grad bias')

CASES = {
    'plain': dict(),
    'stride2': dict(stride=2),
    'dilation2_pad2': dict(dilation=2, padding=2),
    'no_padding': dict(padding=0),
    'deform_groups2': dict(deform_groups=2),
    'groups2': dict(groups=2),
    'groups2_deform_groups2': dict(groups=2, deform_groups=2),
    'groups2_deform_groups4': dict(cin=8, groups=2, deform_groups=4),
    'groups4_deform_groups2': dict(cin=8, cout=8, groups=4, deform_groups=2),
    'odd_batch3_stride2_dil2': dict(batch=3, size=(11, 6), stride=2,
                                    dilation=2, padding=1),
    'kernel_3x2': dict(kernel=(3, 2), size=(6, 8)),
    'far_offsets': dict(scale=8.0),
    'integer_offsets': dict(integer=True),
    'integer_offsets_dg2_stride2': dict(integer=True, deform_groups=2,
                                        stride=2),
}


@pytest.mark.parametrize('name', list(CASES))
def test_matches_mmcv_float64(name):
    ours, ref = run_both(make_case(**CASES[name]))
    for a, b, what in zip(ours, ref, NAMES):
        assert a.shape == b.shape, what
        assert_close_rel(a, b, 1e-10, what)


@pytest.mark.parametrize('chunk_bytes', [1, 3 * 9 * 2 * 8 + 5])
def test_chunk_boundaries(chunk_bytes):
    """1 byte: one output pixel per chunk; 3 × 9 taps × 2 channels × 8 bytes
    (+5): 3 pixels per chunk, so chunks end mid-row of the 5-wide map."""
    case = make_case(batch=2, size=(6, 5), deform_groups=2, groups=2)
    ours, ref = run_both(case, chunk_bytes=chunk_bytes)
    for a, b, what in zip(ours, ref, NAMES):
        assert_close_rel(a, b, 1e-10, what)


def _channels_last(case):
    case = dict(case)
    case['x'] = case['x'].contiguous(memory_format=torch.channels_last)
    return case


@pytest.mark.parametrize('name', ['plain', 'stride2', 'groups2_deform_groups4',
                                  'far_offsets'])
@pytest.mark.parametrize('chunk_bytes', [1, dc.DEFAULT_CHUNK_BYTES])
def test_channels_last_input_matches_mmcv(name, chunk_bytes):
    """A channels-last input is read in place (one piece) or per piece, and
    gives a channels-last output and input gradient -- with mmcv's values
    (its kernel run on the standard layout)."""
    case = make_case(**CASES[name])
    ours = out_and_grads(_channels_last(case), 'segext', chunk_bytes)
    ref = out_and_grads(case, 'mmcv')
    assert ours[0].is_contiguous(memory_format=torch.channels_last)
    assert ours[1].is_contiguous(memory_format=torch.channels_last)
    for a, b, what in zip(ours, ref, NAMES):
        assert_close_rel(a, b, 1e-10, what)


def test_channels_last_output_takes_inplace_ops():
    """The output is a tensor of its own (not a view), so an in-place
    activation after it (ConvModule's ReLU) keeps the custom backward."""
    case = _channels_last(make_case(dtype=torch.float32))
    x = case['x'].requires_grad_()
    out = deform_conv2d_cpu(x, case['offset'], case['weight'], case['bias'],
                            1, 1)
    F.relu(out, inplace=True).sum().backward()
    ref_x = case['x'].detach().contiguous().requires_grad_()
    F.relu(deform_conv2d_cpu(ref_x, case['offset'], case['weight'],
                             case['bias'], 1, 1)).sum().backward()
    torch.testing.assert_close(x.grad, ref_x.grad)


@pytest.mark.parametrize('groups', [1, 2])
@pytest.mark.parametrize('onednn', [True, False])
def test_matches_mmcv_float32_fpn_like(onednn, groups, monkeypatch):
    """float32 at a P5-like size: 1e-4 relative to each tensor's scale,
    with the forward GEMM and weight gradient on oneDNN's matmul and on
    MKL's sgemm (onednn_matmul.onednn_preferred picks one per CPU)."""
    monkeypatch.setattr(onednn_matmul, '_PREFERRED', onednn)
    case = make_case(batch=2, cin=32, cout=16, size=(25, 38), scale=3.0,
                     groups=groups, deform_groups=groups,
                     dtype=torch.float32)
    ours, ref = run_both(case)
    for a, b, what in zip(ours, ref, NAMES):
        assert_close_rel(a, b, 1e-4, what)


def test_samples_exactly_on_the_border():
    """Samples at y or x exactly -1, 0, H-1 or H: mmcv's convention (zero
    at <= -1 and >= H, no offset gradient there) holds at the border."""
    case = make_case(batch=1, size=(5, 6), padding=1, scale=0.0)
    ho, wo = case['offset'].shape[2:]
    g = torch.Generator().manual_seed(3)
    case['offset'] = torch.randint(-2, 3, case['offset'].shape,
                                   generator=g).double()
    ours, ref = run_both(case)
    for a, b, what in zip(ours, ref, NAMES):
        assert_close_rel(a, b, 1e-10, what)


def test_zero_offsets_equal_conv2d():
    case = make_case(batch=2, cin=4, cout=6, size=(8, 7), groups=2,
                     stride=2, dilation=2, padding=2, scale=0.0)
    out = deform_conv2d_cpu(case['x'], case['offset'], case['weight'],
                            case['bias'], case['stride'], case['padding'],
                            case['dilation'], case['groups'])
    ref = F.conv2d(case['x'], case['weight'], case['bias'], case['stride'],
                   case['padding'], case['dilation'], case['groups'])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_gradcheck_fractional_offsets():
    """The hand-written backward is the derivative (away from the integer
    kinks of bilinear interpolation)."""
    case = make_case(batch=1, cin=2, cout=2, size=(4, 5), deform_groups=2,
                     scale=0.0)
    g = torch.Generator().manual_seed(5)
    offset = torch.randint(-2, 2, case['offset'].shape, generator=g)
    offset = offset + 0.2 + 0.6 * torch.rand(offset.shape, generator=g)
    inputs = [case['x'], offset.double(), case['weight'], case['bias']]
    inputs = [t.clone().requires_grad_() for t in inputs]

    def fn(x, off, w, b):
        return deform_conv2d_cpu(x, off, w, b, 1, 1, 1, 1, 2)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7)


def test_input_smaller_than_kernel():
    """mmcv's kernel needs H, W >= kernel (the mmcv path pads, as mmcv's
    DeformConv2d does); segext's path needs no padding."""
    case = make_case(batch=1, cin=3, cout=2, size=(2, 2), scale=0.4)
    args = (case['x'], case['offset'], case['weight'], case['bias'], 1, 1,
            1, 1, 1)
    ours = deform_conv2d(*args, impl='segext')
    ref = deform_conv2d(*args, impl='mmcv')
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_bad_shapes_are_reported():
    case = make_case()
    with pytest.raises(ValueError, match='offset must have shape'):
        deform_conv2d_cpu(case['x'], case['offset'][:, :4], case['weight'],
                          None, 1, 1)
    with pytest.raises(ValueError, match='divisible'):
        deform_conv2d_cpu(case['x'], case['offset'], case['weight'], None,
                          1, 1, 1, 1, 3)


def test_backward_does_not_depend_on_which_chunk_finishes_first(
        monkeypatch):
    """Worker threads take chunks as they come, so chunks finish in any
    order; their (overlapping) input-row and weight gradients must still be
    summed in one fixed order, or a seeded training run is not
    reproducible.  Run the chunks back to front: the gradients must be
    bit-identical (float32, one-pixel chunks that share input rows)."""
    case = make_case(batch=1, cin=8, cout=8, size=(9, 11), scale=1.5,
                     dtype=torch.float32, seed=3)
    expected = out_and_grads(case, 'segext', chunk_bytes=1)[1:]
    map_chunks = dc.map_chunks

    def backwards(run, chunks, workers):
        return map_chunks(run, chunks[::-1], 1)

    monkeypatch.setattr(dc, 'map_chunks', backwards)
    got = out_and_grads(case, 'segext', chunk_bytes=1)[1:]
    for got, want, name in zip(got, expected, NAMES[1:]):
        assert torch.equal(got, want), name


def test_chunks_split_for_threads_only_beyond_one_chunk():
    """Columns that fit one chunk stay one chunk (run in the calling thread
    on torch's threads); more get a multiple of the workers, each chunk
    within chunk_bytes, covering every output pixel once."""
    from segext.ops.deform_geometry import DeformGeometry
    x = torch.zeros(1, 256, 30, 40)  # 1200 px x 9 taps x 256 ch: 10.5 MiB
    geo = DeformGeometry(x, torch.zeros(128, 256, 3, 3), (1, 1), (1, 1),
                         (1, 1), 1, 1)
    per_pixel = 9 * 256 * 4
    assert geo.chunks(16 * 2**20, 4, 2) == [(0, 0, 1200)]
    for chunk_bytes in (8 * 2**20, 2**20):
        chunks = geo.chunks(chunk_bytes, 4, 2)
        assert len(chunks) > 1 and len(chunks) % 2 == 0
        assert all((p1 - p0) * per_pixel <= chunk_bytes
                   for _, p0, p1 in chunks)
        covered = [p for _, p0, p1 in chunks for p in range(p0, p1)]
        assert covered == list(range(1200))


def test_in_order_sum_ignores_completion_order():
    g = torch.Generator().manual_seed(0)
    parts = [(torch.randn(5, 3, generator=g) * 10**float(i % 7),
              torch.randn(4, 3, generator=g) * 10**float(-(i % 5)))
             for i in range(40)]

    def total(order):
        rows, weights = [torch.zeros(12, 3)], [torch.zeros(5, 3)]
        acc = chunk_threads.InOrderSum(rows, weights)
        for i in order:
            w, r = parts[i]
            acc(i, [w], [(0, i % 8, r)])
        acc.check_done(len(parts))
        return rows[0], weights[0]

    order = torch.randperm(len(parts), generator=g).tolist()
    for a, b in zip(total(range(len(parts))), total(order)):
        assert torch.equal(a, b)


def test_thread_count_is_restored():
    threads = torch.get_num_threads()
    case = make_case()
    x = case['x'].requires_grad_()
    deform_conv2d_cpu(x, case['offset'], case['weight'], None, 1, 1,
                      chunk_bytes=1).sum().backward()
    assert torch.get_num_threads() == threads


def _in_a_new_thread(fn):
    """``fn()`` run in a new thread; its result."""
    seen = []
    thread = threading.Thread(target=lambda: seen.append(fn()))
    thread.start()
    thread.join()
    return seen[0]


def _threads_of_a_new_thread():
    return _in_a_new_thread(torch.get_num_threads)


@pytest.mark.skipif(chunk_threads.num_workers() == 1,
                    reason='no per-thread OpenMP limit in this torch build')
def test_workers_do_not_change_torchs_thread_count():
    """Workers run on one intra-op thread each, but torch's setting for the
    caller and for any other thread stays as it was while they run."""
    caller, other = torch.get_num_threads(), _threads_of_a_new_thread()
    seen = []

    def run(chunks):
        for _ in chunks:
            seen.append((torch.get_num_threads(), _threads_of_a_new_thread(),
                         torch.get_num_threads()))

    chunk_threads.map_chunks(run, list(range(4)), 2)
    assert len(seen) == 4
    for worker, new_thread, worker_after in seen:
        assert worker == worker_after == 1 and new_thread == other
    assert torch.get_num_threads() == caller


def _mkl_threads_here() -> int:
    """MKL's thread-local count of the calling thread (set back as read)."""
    mkl_local = chunk_threads._MKL_SET_NUM_THREADS_LOCAL
    torch.get_num_threads()  # torch's lazy per-thread init, as in an op
    previous = mkl_local(1)
    mkl_local(previous)
    return previous


@pytest.mark.skipif(chunk_threads.num_workers() == 1
                    or chunk_threads._MKL_SET_NUM_THREADS_LOCAL is None,
                    reason='no per-thread OpenMP or MKL limit in this build')
def test_workers_run_mkl_on_one_thread():
    """torch gives each new thread an MKL count of its intra-op threads;
    a worker's ``torch.mm`` (the DCN weight gradient) must run on one."""
    caller = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        # what the workers would run on without segext
        assert _in_a_new_thread(_mkl_threads_here) == 2

        def run(chunks):
            return [_mkl_threads_here() for _ in chunks]

        counts = chunk_threads.map_chunks(run, list(range(4)), 2)
        assert sorted(sum(counts, [])) == [1, 1, 1, 1]
    finally:
        torch.set_num_threads(caller)


# --- dispatch ---------------------------------------------------------------
def test_auto_is_segext_on_cpu():
    x = torch.zeros(1, 1, 2, 2)
    assert select_deform_conv_impl(x) == 'segext'
    assert select_deform_conv_impl(x.double()) == 'segext'
    assert select_deform_conv_impl(x.half()) == 'mmcv'
    assert select_deform_conv_impl(x, 'mmcv') == 'mmcv'
    assert select_deform_conv_impl(x, 'segext') == 'segext'
    assert select_deform_conv_impl(x) == 'segext'
    with pytest.raises(ValueError, match='impl must be one of'):
        select_deform_conv_impl(x, 'cuda')


def test_non_cpu_device_dispatches_to_mmcv(monkeypatch):
    """A tensor on any other device (here 'meta', standing in for CUDA)
    goes to mmcv's op exactly as upstream calls it, then gets the bias."""
    calls = []

    def fake_mmcv(input, offset, weight, stride, padding, dilation, groups,
                  deform_groups, bias, im2col_step):
        calls.append((stride, padding, dilation, groups, deform_groups, bias,
                      im2col_step))
        return input.new_zeros(input.shape[0], weight.shape[0],
                               *offset.shape[2:])

    monkeypatch.setattr(deform_conv_mmcv, 'mmcv_deform_conv2d', fake_mmcv)
    x = torch.empty(2, 4, 8, 8, device='meta')
    offset = torch.empty(2, 18, 4, 4, device='meta')
    weight = torch.empty(6, 4, 3, 3, device='meta')
    bias = torch.empty(6, device='meta')
    assert select_deform_conv_impl(x) == 'mmcv'
    out = deform_conv2d(x, offset, weight, bias, stride=2, padding=1,
                        im2col_step=16)
    assert out.shape == (2, 6, 4, 4) and out.device.type == 'meta'
    assert calls == [((2, 2), (1, 1), (1, 1), 1, 1, False, 16)]
    with pytest.raises(ValueError, match='CPU tensors only'):
        deform_conv2d(x, offset, weight, impl='segext')

    # and a CPU tensor does not reach mmcv unless asked to
    calls.clear()
    case = make_case(batch=1)
    args = (case['x'], case['offset'], case['weight'], None, 1, 1)
    deform_conv2d(*args)
    assert calls == []
    deform_conv2d(*args, impl='mmcv')
    assert len(calls) == 1
    layer = DeformConv2dWithOffset(4, 6, impl='mmcv')  # per layer (config)
    layer(case['x'].float())
    assert len(calls) == 2


# --- module -----------------------------------------------------------------
def test_dcnv1_registered_in_root_registry():
    assert MODELS.get('DCNv1') is DeformConv2dWithOffset
    layer = build_conv_layer(dict(type='DCNv1'), 8, 16, 3, padding=1)
    assert isinstance(layer, DeformConv2dWithOffset)
    assert layer.bias is not None and layer.bias.shape == (16, )
    assert layer(torch.randn(2, 8, 9, 7)).shape == (2, 16, 9, 7)
    layer = build_conv_layer(
        dict(type='DCNv1', deform_groups=2), 8, 16, 3, stride=2, padding=1,
        bias=False)
    assert layer.bias is None
    assert layer.conv_offset.out_channels == 2 * 2 * 9
    assert layer(torch.randn(1, 8, 9, 7)).shape == (1, 16, 5, 4)


def test_module_starts_as_plain_conv():
    torch.manual_seed(0)
    m = DeformConv2dWithOffset(4, 6, 3, stride=1, padding=1, groups=2)
    assert m.conv_offset.weight.abs().sum() == 0
    assert m.conv_offset.bias.abs().sum() == 0
    # nn.Conv2d's init: kaiming_uniform(a=sqrt(5)) -> U(-1/sqrt(fan_in), ..)
    bound = 1 / math.sqrt(2 * 9)
    assert m.weight.abs().max() <= bound and m.bias.abs().max() <= bound
    x = torch.randn(2, 4, 7, 9)
    torch.testing.assert_close(
        m(x), F.conv2d(x, m.weight, m.bias, padding=1, groups=2))
    assert m(x).requires_grad


def test_offsets_stay_zero_under_a_parents_init_cfg():
    class Parent(BaseModule):

        def __init__(self):
            super().__init__(init_cfg=dict(type='Normal', layer='Conv2d',
                                           std=1.0))
            self.dcn = DeformConv2dWithOffset(4, 4)

    parent = Parent()
    parent.init_weights()
    assert parent.dcn.conv_offset.weight.abs().sum() == 0
    assert parent.dcn.conv_offset.bias.abs().sum() == 0


def test_conv_module_with_dcnv1_trains():
    m = ConvModule(4, 8, 3, padding=1, conv_cfg=dict(type='DCNv1'),
                   norm_cfg=dict(type='GN', num_groups=4))
    m.init_weights()
    assert m.conv.bias is None  # ConvModule's bias='auto' with a norm
    assert m.conv.conv_offset.weight.abs().sum() == 0
    x = torch.randn(2, 4, 6, 5, requires_grad=True)
    m(x).square().mean().backward()
    # the offset conv learns although its output starts at exactly zero
    assert m.conv.conv_offset.weight.grad.abs().sum() > 0
    assert m.conv.weight.grad.abs().sum() > 0 and x.grad is not None


def test_module_impl_argument():
    torch.manual_seed(0)
    m = DeformConv2dWithOffset(4, 4, impl='mmcv')
    nn.init.normal_(m.conv_offset.weight, std=0.3)
    x = torch.randn(1, 4, 6, 6)
    ref = m(x)
    m.impl = 'segext'
    torch.testing.assert_close(m(x), ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='impl must be one of'):
        DeformConv2dWithOffset(4, 4, impl='fast')


def _run_in_child(queue):
    case = make_case(batch=2)
    out = deform_conv2d_cpu(case['x'], case['offset'], case['weight'], None,
                            1, 1)
    queue.put(tuple(out.shape))


def test_works_in_a_forked_child():
    """The worker threads are kept between calls; a forked child (e.g. a
    DataLoader worker) must get its own instead of waiting on dead ones."""
    import multiprocessing as mp
    case = make_case(batch=2)
    deform_conv2d_cpu(case['x'], case['offset'], case['weight'], None, 1, 1)
    ctx = mp.get_context('fork')
    queue = ctx.Queue()
    child = ctx.Process(target=_run_in_child, args=(queue, ))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert queue.get(timeout=1) == (2, 6, 7, 9)
