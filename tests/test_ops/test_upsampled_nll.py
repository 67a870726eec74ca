"""segext.ops.upsampled_nll: per-pixel CE of x4 upsampled logits, both
implementations against F.interpolate + F.cross_entropy."""
import pytest
import torch
import torch.nn.functional as F

from segext.ops import upsampled_nll as unll
from segext.ops.native_build import _compiler
from segext.ops.upsampled_nll import upsampled_nll


@pytest.fixture(params=['native', 'torch'])
def impl(request):
    if request.param == 'native' and not unll.native_available():
        # a machine with a compiler must build them
        assert _compiler() is None, 'C++ kernels failed to build'
        pytest.skip('no C++ compiler: only the PyTorch path runs here')
    return request.param


def reference(x, labels, class_weight, ignore_index=255):
    up = F.interpolate(x, size=labels.shape[-2:], mode='bilinear',
                       align_corners=False)
    return F.cross_entropy(up, labels, class_weight, reduction='none',
                           ignore_index=ignore_index)


def problem(batch=2, classes=5, h=7, w=6, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, h, w, generator=g, dtype=dtype) * 3
    labels = torch.randint(0, classes, (batch, 4 * h, 4 * w), generator=g)
    labels[:, :3] = 255
    labels[:, 5, 2:9] = 255
    grad = torch.rand(batch, 4 * h, 4 * w, generator=g, dtype=dtype)
    class_weight = torch.rand(classes, generator=g, dtype=dtype)
    return logits, labels, grad, class_weight


def values_and_grads(fn, logits, grad, channels_last):
    x = logits.clone()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    nll = fn(x)
    nll.backward(grad)
    return nll.detach(), x.grad


@pytest.mark.parametrize('weighted', [True, False])
@pytest.mark.parametrize('channels_last', [False, True])
def test_equals_upsampling_the_whole_map_float64(impl, channels_last,
                                                  weighted):
    """Values and gradients equal the full-resolution reference, with
    ignored pixels, with and without class weights, for logits in either
    memory layout (the gradient in the logits' layout)."""
    logits, labels, grad, class_weight = problem()
    class_weight = class_weight if weighted else None
    expected = values_and_grads(
        lambda x: reference(x, labels, class_weight), logits, grad,
        channels_last)
    got = values_and_grads(
        lambda x: upsampled_nll(x, labels, class_weight, 255, impl=impl),
        logits, grad, channels_last)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert got[1].is_contiguous(memory_format=torch.channels_last) == \
        channels_last
    assert (got[0][labels == 255] == 0).all()


@pytest.mark.parametrize('band_rows', [1, 2, 3, 100])
def test_torch_bands_equal_the_whole_map(band_rows):
    """The PyTorch path upsamples each band of source rows from those rows
    plus one on either side: any band height gives the whole map's values
    and gradients."""
    logits, labels, grad, class_weight = problem()
    expected = values_and_grads(
        lambda x: reference(x, labels, class_weight), logits, grad, True)
    got = values_and_grads(
        lambda x: unll.BandedUpsampledNLL.apply(x, labels, class_weight, 255,
                                                band_rows),
        logits, grad, True)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('classes', [133, 3])
def test_float32_matches_the_reference(impl, classes):
    """float32, with as many classes as COCO panoptic (the native kernel's
    vectorised exp and lane sums) and with fewer than one vector."""
    logits, labels, grad, class_weight = problem(
        batch=1, classes=classes, h=9, w=11, dtype=torch.float32)
    expected = values_and_grads(
        lambda x: reference(x, labels, class_weight), logits, grad, True)
    got = values_and_grads(
        lambda x: upsampled_nll(x, labels, class_weight, 255, impl=impl),
        logits, grad, True)
    torch.testing.assert_close(got, expected, rtol=2e-5, atol=2e-6)


def test_native_bands_and_threads_do_not_change_the_result(monkeypatch):
    """The native backward gathers each source row's gradient from its
    output rows in order: one band per row, one band per image, one or
    two threads give bit-identical values and gradients."""
    if not unll.native_available():
        pytest.skip('no C++ kernels here')
    logits, labels, grad, _ = problem(batch=2, classes=19, h=10, w=8,
                                      dtype=torch.float32)
    results = []
    for step, workers in [(None, 1), (None, 2), (1, 2), (100, 1)]:
        if step is not None:
            monkeypatch.setattr(
                unll, '_source_bands',
                lambda b, h, _w, step=step: [(n, i, min(i + step, h))
                                              for n in range(b)
                                              for i in range(0, h, step)])
        monkeypatch.setattr(unll, 'num_workers', lambda workers=workers:
                            workers)
        results.append(values_and_grads(
            lambda x: upsampled_nll(x, labels, None, 255, impl='native'),
            logits, grad, True))
        monkeypatch.undo()
    for other in results[1:]:
        assert torch.equal(other[0], results[0][0])
        assert torch.equal(other[1], results[0][1])


def test_a_label_outside_the_classes_is_named(impl):
    logits, labels, _, _ = problem(classes=5)
    labels[1, 7, 3] = 9
    with pytest.raises((ValueError, IndexError, RuntimeError),
                       match='9' if impl == 'native' else None):
        upsampled_nll(logits, labels, None, 255, impl=impl)
    if impl == 'native':
        with pytest.raises(ValueError, match=r'image 1, pixel \(row 7, '
                           r'column 3\)'):
            upsampled_nll(logits, labels, None, 255, impl=impl)


def test_labels_must_be_four_times_the_logits():
    logits, labels, _, _ = problem()
    with pytest.raises(ValueError, match='not 4x the logits'):
        upsampled_nll(logits, labels[:, :-1], None, 255)


def test_auto_takes_the_native_kernels_for_float_and_torch_otherwise(
        monkeypatch):
    calls = []
    for name in ('NativeUpsampledNLL', 'BandedUpsampledNLL'):
        monkeypatch.setattr(
            getattr(unll, name), 'apply',
            lambda *a, name=name: calls.append(name) or a[0].sum())
    monkeypatch.setattr(unll, 'native_available', lambda: True)
    logits, labels, _, _ = problem()
    upsampled_nll(logits, labels, None, 255)
    upsampled_nll(logits.bfloat16(), labels, None, 255)
    monkeypatch.setattr(unll, 'native_available', lambda: False)
    upsampled_nll(logits, labels, None, 255)
    assert calls == ['NativeUpsampledNLL', 'BandedUpsampledNLL',
                     'BandedUpsampledNLL']
