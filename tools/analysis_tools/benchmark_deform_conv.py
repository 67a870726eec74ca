"""segext's CPU deformable conv vs mmcv's CPU kernel vs a plain conv.

Everything is measured side by side in ONE run: the implementations take
turns (interleaved), each measurement is repeated and the tables show medians
and ratios. Two parts:

1. ``layer``: one 256→256 3×3 DCN v1 layer (pad 1, bias) on the FPN levels of
   an 800×1216 image — P2 200×304, P3 100×152, P4 50×76, P5 25×38 — and on a
   toy 16×16 map. Offsets are N(0, 2²) pixels: most samples fall between
   pixels and some outside the map.
2. ``subnet``: UPSNet's shared deformable sub-network of the semantic head
   (3 DCN v1 layers 256→256→128→128 with ReLU, each with its offset conv,
   UPSNet Sec. 3.1) over P2–P5 of one 800×1216 image, with both
   implementations, and the same 3 layers as plain convs. The offset convs
   get N(0, 0.02²) weights, so offsets are about a pixel (at init they are
   exactly zero).

Passes: ``fwd`` is an inference forward (no autograd); a training step is a
forward with autograd plus the backward (gradients for input, offsets,
weight and bias), reported as ``bwd`` (its backward) and ``fwd+bwd``.

    python tools/analysis_tools/benchmark_deform_conv.py          # default
    python tools/analysis_tools/benchmark_deform_conv.py --subnet-backward
    python tools/analysis_tools/benchmark_deform_conv.py --parts layer \\
        --sizes 100x152 25x38 --repeats 5 --max-seconds 30

Every cell (one implementation, one pass kind, one input) runs up to
``--repeats`` times but sits out the remaining rounds once it has used
``--max-seconds`` (it always runs once): mmcv's backward at P2 alone takes
25-60 s on this machine. ``runs`` gives the number of inference + training
runs behind the medians. On a shared machine absolute times drift with the
load; compare the ratios within one run.

Reusable from other benchmarks: :func:`time_fn`, :func:`measure`,
:func:`bench_deform_conv`, :func:`bench_subnetwork`, :func:`format_rows`,
:func:`main`.
"""
import argparse
import statistics
import time
from typing import Callable, Dict, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from segext.models.layers.deform_conv import (  # noqa: E402
    DeformConv2dWithOffset, deform_conv2d)

IMPLS = ('conv', 'segext', 'mmcv')
FPN_SIZES = ('200x304', '100x152', '50x76', '25x38')
TOY_SIZE = '16x16'


def time_fn(fn: Callable[[], object]) -> float:
    """Wall time of one call of ``fn`` in seconds (CPU: nothing to sync)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(steps: Dict[str, Callable[[], Dict[str, float]]],
            repeats: int = 3,
            max_seconds: float = 10.0,
            warmup_below: float = 1.0) -> Dict[str, dict]:
    """Run ``steps`` interleaved; each returns named durations in seconds.

    ``repeats`` round-robin rounds over the steps; a step that has already
    used ``max_seconds`` sits the remaining rounds out (it always runs at
    least once). Before them, every step runs once untimed when that takes
    less than ``warmup_below`` seconds (first calls pay for oneDNN primitive
    creation, thread start-up and allocator growth: milliseconds, which
    would skew the small maps; a longer first run is kept as a timed run).
    Returns per step the median of every duration it reports, its number
    of ``runs`` and, under ``each``, every run's durations in run order.
    """
    times = {name: [] for name in steps}
    for name, step in steps.items():
        first = step()
        if max(first.values()) >= warmup_below:
            times[name].append(first)
    for _ in range(repeats):
        for name, step in steps.items():
            spent = sum(max(run.values()) for run in times[name])
            if times[name] and (spent >= max_seconds
                                or len(times[name]) >= repeats):
                continue
            times[name].append(step())
    results = {}
    for name, runs in times.items():
        results[name] = {
            key: statistics.median(run[key] for run in runs)
            for key in runs[0]
        }
        results[name]['runs'] = len(runs)
        results[name]['each'] = runs
    return results


def inference_step(forward: Callable[[], object]):
    """A :func:`measure` step: ``forward()`` without autograd -> ``fwd``."""

    def step():
        with torch.no_grad():
            return dict(fwd=time_fn(forward))

    return step


def train_step(forward: Callable[[], object],
               backward: Callable[[object], None],
               zero_grad: Callable[[], None]):
    """A :func:`measure` step: ``backward(forward())`` -> ``bwd``, ``total``.
    """

    def step():
        zero_grad()
        start = time.perf_counter()
        out = forward()
        middle = time.perf_counter()
        backward(out)
        end = time.perf_counter()
        return dict(bwd=end - middle, total=end - start)

    return step


def _by_impl(results: Dict[str, dict], impls: Sequence[str]) -> dict:
    """'<impl> fwd' / '<impl> train' cells -> one dict per impl."""
    merged = {}
    for impl in impls:
        inference = results[impl + ' fwd']
        merged[impl] = dict(fwd=inference['fwd'],
                            runs=str(inference['runs']))
        train = results.get(impl + ' train')
        if train is not None:
            merged[impl].update(bwd=train['bwd'], total=train['total'])
            merged[impl]['runs'] += f'+{train["runs"]}'
    return merged


def bench_deform_conv(size: Tuple[int, int],
                      in_channels: int = 256,
                      out_channels: int = 256,
                      batch: int = 1,
                      impls: Sequence[str] = IMPLS,
                      backward: bool = True,
                      repeats: int = 3,
                      max_seconds: float = 10.0,
                      seed: int = 0) -> Dict[str, dict]:
    """One 3×3 DCN v1 layer (pad 1, bias) on an (H, W) map, per impl.

    ``impls``: 'conv' (plain ``F.conv2d``), 'segext', 'mmcv'. Returns per
    impl the medians ``fwd`` (inference) and, with ``backward``, ``bwd`` and
    ``total`` of training steps, plus ``runs`` ('inference+training').
    """
    h, w = size
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_channels, h, w, generator=g)
    offset = torch.randn(batch, 18, h, w, generator=g) * 2
    weight = torch.randn(out_channels, in_channels, 3, 3,
                         generator=g) / (in_channels * 9)**0.5
    bias = torch.randn(out_channels, generator=g)
    grad = torch.randn(batch, out_channels, h, w, generator=g)
    leaves = (x, offset, weight, bias)
    for t in leaves:
        t.requires_grad_(backward)

    def forward_for(impl):
        if impl == 'conv':
            return lambda: F.conv2d(x, weight, bias, padding=1)
        return lambda: deform_conv2d(
            x, offset, weight, bias, 1, 1, impl=impl)

    def zero_grad():
        for t in leaves:
            t.grad = None

    steps = {}
    for impl in impls:
        steps[impl + ' fwd'] = inference_step(forward_for(impl))
        if backward:
            steps[impl + ' train'] = train_step(
                forward_for(impl), lambda out: out.backward(grad), zero_grad)
    return _by_impl(measure(steps, repeats, max_seconds), impls)


class _SubNetwork(nn.Module):
    """UPSNet's shared semantic sub-network: 3 × (3×3 conv + ReLU)."""

    def __init__(self, impl: str, channels=(256, 256, 128, 128)):
        super().__init__()
        layers = []
        for cin, cout in zip(channels[:-1], channels[1:]):
            if impl == 'conv':
                layers.append(nn.Conv2d(cin, cout, 3, padding=1))
            else:
                layers.append(DeformConv2dWithOffset(cin, cout, impl=impl))
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, feats):
        return [self.layers(f) for f in feats]


def fpn_sizes(image: Tuple[int, int]) -> list:
    """(H, W) of P2–P5 for an (H, W) image (strides 4..32, rounded up)."""
    h, w = image
    return [(-(-h // s), -(-w // s)) for s in (4, 8, 16, 32)]


def bench_subnetwork(image: Tuple[int, int] = (800, 1216),
                     impls: Sequence[str] = IMPLS,
                     backward: bool = False,
                     repeats: int = 3,
                     max_seconds: float = 10.0,
                     seed: int = 0) -> Dict[str, dict]:
    """UPSNet's shared sub-network over P2–P5 of one (H, W) image, per impl.

    'segext' and 'mmcv' share the weights (DCN v1 with offset convs);
    'conv' is the same 3 layers as plain convs. Results as
    :func:`bench_deform_conv`; the training step back-propagates into the
    features, the weights and the offset convs.
    """
    torch.manual_seed(seed)
    nets = {impl: _SubNetwork(impl) for impl in impls}
    deformable = [nets[i] for i in impls if i != 'conv']
    if deformable:
        for m in deformable[0].modules():
            if isinstance(m, DeformConv2dWithOffset):
                nn.init.normal_(m.conv_offset.weight, std=0.02)
        for net in deformable[1:]:
            net.load_state_dict(deformable[0].state_dict())
    g = torch.Generator().manual_seed(seed)
    feats = [
        torch.randn(1, 256, h, w, generator=g).requires_grad_(backward)
        for h, w in fpn_sizes(image)
    ]

    def zero_grad_for(net):

        def zero_grad():
            net.zero_grad(set_to_none=True)
            for f in feats:
                f.grad = None

        return zero_grad

    steps = {}
    for impl, net in nets.items():
        steps[impl + ' fwd'] = inference_step(lambda net=net: net(feats))
        if backward:
            steps[impl + ' train'] = train_step(
                lambda net=net: net(feats),
                lambda outs: sum(o.sum() for o in outs).backward(),
                zero_grad_for(net))
    return _by_impl(measure(steps, repeats, max_seconds), impls)


def _ratio(a: float, b: float) -> str:
    return f'{a / b:.2f}x' if b > 0 else '-'


HEADER = ('| {:<9} | {:<7} | {:>8} | {:>8} | {:>8} | {:>11} | {:>11} | '
          '{:<18} |').format('input', 'pass', 'conv s', 'segext s', 'mmcv s',
                             'mmcv/segext', 'segext/conv',
                             'runs conv/seg/mmcv')
RULE = '|' + '|'.join(':' + '-' * (len(c) - 1) if i in (0, 1, 7) else
                      '-' * (len(c) - 1) + ':'
                      for i, c in enumerate(HEADER.split('|')[1:-1])) + '|'


def format_rows(label: str, res: Dict[str, dict]) -> list:
    """Markdown table rows (fwd, bwd, fwd+bwd as measured) for one input."""
    rows = []
    for key, kind in (('fwd', 'fwd'), ('bwd', 'bwd'), ('total', 'fwd+bwd')):
        if not all(key in res[i] for i in res):
            continue
        cells = [f'{res[i][key]:8.3f}' if i in res else f'{"-":>8}'
                 for i in IMPLS]
        speedup = _ratio(res['mmcv'][key], res['segext'][key]) \
            if 'mmcv' in res and 'segext' in res else '-'
        overhead = _ratio(res['segext'][key], res['conv'][key]) \
            if 'segext' in res and 'conv' in res else '-'
        runs = '/'.join(
            res[i]['runs'].split('+')[0 if key == 'fwd' else -1]
            for i in IMPLS if i in res)
        rows.append(f'| {label:<9} | {kind:<7} | ' + ' | '.join(cells) +
                    f' | {speedup:>11} | {overhead:>11} | {runs:<18} |')
    return rows


def _parse_size(text: str) -> Tuple[int, int]:
    h, w = text.lower().split('x')
    return int(h), int(w)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--parts', nargs='+', default=['layer', 'subnet'],
                   choices=['layer', 'subnet'])
    p.add_argument('--sizes', nargs='+',
                   default=list(FPN_SIZES) + [TOY_SIZE],
                   help='HxW feature maps for the layer part')
    p.add_argument('--channels', type=int, default=256,
                   help='in = out channels of the layer part')
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--impls', nargs='+', default=list(IMPLS),
                   choices=list(IMPLS))
    p.add_argument('--no-backward', action='store_true',
                   help='layer part: inference forward only')
    p.add_argument('--subnet-image', default='800x1216',
                   help='HxW image whose P2-P5 feed the sub-network')
    p.add_argument('--subnet-backward', action='store_true',
                   help='sub-network: training steps too (mmcv: 1-2 min '
                   'per step at 800x1216)')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--max-seconds', type=float, default=5.0,
                   help='a cell stops repeating after this much time')
    p.add_argument('--threads', type=int, default=None,
                   help='torch intra-op threads (default: torch default)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} intra-op '
          f'threads; up to {args.repeats} runs and {args.max_seconds:g} s '
          'per cell; medians in seconds')
    start = time.perf_counter()
    if 'layer' in args.parts:
        print(f'\nOne DCN v1 layer {args.channels}->{args.channels}, 3x3, '
              f'batch {args.batch}\n')
        print(HEADER)
        print(RULE)
        for text in args.sizes:
            res = bench_deform_conv(
                _parse_size(text), args.channels, args.channels, args.batch,
                args.impls, not args.no_backward, args.repeats,
                args.max_seconds)
            for row in format_rows(text, res):
                print(row, flush=True)
    if 'subnet' in args.parts:
        image = _parse_size(args.subnet_image)
        levels = ', '.join(f'{h}x{w}' for h, w in fpn_sizes(image))
        print(f'\nUPSNet shared sub-network 256->256->128->128 over P2-P5 '
              f'({levels}) of a {args.subnet_image} image\n')
        print(HEADER)
        print(RULE)
        res = bench_subnetwork(image, args.impls, args.subnet_backward,
                               args.repeats, args.max_seconds)
        for row in format_rows('P2-P5', res):
            print(row, flush=True)
    print(f'\ntotal {time.perf_counter() - start:.0f} s')


if __name__ == '__main__':
    main()
