"""segext's CPU deformable conv vs mmcv's CPU kernel vs a plain conv.

Everything is measured side by side in ONE run: the implementations take
turns (interleaved), each measurement is repeated and the table shows medians
and ratios. Two parts:

1. ``layer``: one 256→256 3×3 DCN v1 layer (pad 1, bias) on the FPN levels of
   an 800×1216 image — P2 200×304, P3 100×152, P4 50×76, P5 25×38 — and on a
   toy 16×16 map; forward and forward+backward (gradients for input, offsets,
   weight and bias). Offsets are N(0, 2²) pixels, so many samples fall
   between pixels and some outside the map.
2. ``subnet``: UPSNet's shared deformable sub-network of the semantic head
   (3 DCN v1 layers 256→256→128→128 with ReLU, each with its offset conv,
   UPSNet Sec. 3.1) over P2–P5 of one image, with both implementations, and
   the same 3 layers as plain convs. Offset convs get N(0, 0.02²) weights so
   that offsets are about a pixel (at init they are exactly zero).

    python tools/analysis_tools/benchmark_deform_conv.py          # default
    python tools/analysis_tools/benchmark_deform_conv.py --subnet-backward
    python tools/analysis_tools/benchmark_deform_conv.py --parts layer \\
        --sizes 100x152 25x38 --repeats 5 --max-seconds 30

A measurement cell (one implementation at one size) is repeated
``--repeats`` times, but stops early once it has used ``--max-seconds`` (at
least one run): mmcv's backward at P2 alone takes ~25-60 s here. The ``runs``
column says how many runs the medians are over. Timings on a shared machine
are noisy; compare ratios within one run.

Reusable from other benchmarks: :func:`time_fn`, :func:`measure`,
:func:`bench_deform_conv`, :func:`bench_subnetwork`, :func:`main`.
"""
import argparse
import os.path as osp
import statistics
import sys
import time
from typing import Callable, Dict, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from segext.models.layers.deform_conv import (  # noqa: E402
    DeformConv2dWithOffset, deform_conv2d)

IMPLS = ('conv', 'segext', 'mmcv')
FPN_SIZES = ('200x304', '100x152', '50x76', '25x38')
TOY_SIZE = '16x16'


def time_fn(fn: Callable[[], object]) -> float:
    """Wall time of one call of ``fn`` in seconds (CPU: no sync needed)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(steps: Dict[str, Callable[[], Tuple[float, float]]],
            repeats: int = 3,
            max_seconds: float = 10.0) -> Dict[str, dict]:
    """Run ``steps`` interleaved; each returns (forward s, total s).

    Round-robin over the steps, ``repeats`` rounds; a step that has already
    used ``max_seconds`` sits the remaining rounds out (it always runs at
    least once). Returns per step the medians ``forward``, ``total`` and the
    number of ``runs``.
    """
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            spent = sum(total for _, total in times[name])
            if times[name] and spent >= max_seconds:
                continue
            times[name].append(step())
    return {
        name: dict(
            forward=statistics.median(f for f, _ in runs),
            total=statistics.median(t for _, t in runs),
            runs=len(runs))
        for name, runs in times.items()
    }


def _layer_step(impl: str, inputs: dict, backward: bool):
    x, offset, weight, bias = (inputs[k]
                               for k in ('x', 'offset', 'weight', 'bias'))
    grad = inputs['grad']

    def step():
        for t in (x, offset, weight, bias):
            t.grad = None
        start = time.perf_counter()
        if impl == 'conv':
            out = F.conv2d(x, weight, bias, padding=1)
        else:
            out = deform_conv2d(x, offset, weight, bias, 1, 1, impl=impl)
        forward = time.perf_counter() - start
        if backward:
            out.backward(grad)
        return forward, time.perf_counter() - start

    return step


def bench_deform_conv(size: Tuple[int, int],
                      in_channels: int = 256,
                      out_channels: int = 256,
                      batch: int = 1,
                      impls: Sequence[str] = IMPLS,
                      backward: bool = True,
                      repeats: int = 3,
                      max_seconds: float = 10.0,
                      seed: int = 0) -> Dict[str, dict]:
    """One 3×3 DCN v1 layer (pad 1, bias) on a (H, W) map, per impl.

    ``impls``: 'conv' (plain ``F.conv2d``), 'segext', 'mmcv'. Returns
    :func:`measure`'s medians per impl.
    """
    h, w = size
    g = torch.Generator().manual_seed(seed)
    inputs = dict(
        x=torch.randn(batch, in_channels, h, w, generator=g),
        offset=torch.randn(batch, 18, h, w, generator=g) * 2,
        weight=torch.randn(out_channels, in_channels, 3, 3, generator=g) /
        (in_channels * 9)**0.5,
        bias=torch.randn(out_channels, generator=g),
        grad=torch.randn(batch, out_channels, h, w, generator=g))
    for k in ('x', 'offset', 'weight', 'bias'):
        inputs[k].requires_grad_(backward)
    steps = {impl: _layer_step(impl, inputs, backward) for impl in impls}
    return measure(steps, repeats, max_seconds)


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

    'segext' and 'mmcv' use the same weights (DCN v1 with offset convs);
    'conv' is the same 3 layers as plain convs. ``backward`` adds the
    gradients of everything (features, weights, offset convs).
    """
    torch.manual_seed(seed)
    nets = {}
    for impl in impls:
        nets[impl] = _SubNetwork(impl)
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

    def step_for(net):

        def step():
            net.zero_grad(set_to_none=True)
            for f in feats:
                f.grad = None
            start = time.perf_counter()
            with torch.set_grad_enabled(backward):
                outs = net(feats)
            forward = time.perf_counter() - start
            if backward:
                sum(o.sum() for o in outs).backward()
            return forward, time.perf_counter() - start

        return step

    return measure({impl: step_for(net) for impl, net in nets.items()},
                   repeats, max_seconds)


def _parse_size(text: str) -> Tuple[int, int]:
    h, w = text.lower().split('x')
    return int(h), int(w)


def _ratio(a: float, b: float) -> str:
    return f'{a / b:6.2f}x' if b > 0 else '     -'


def format_rows(label: str, res: Dict[str, dict], backward: bool) -> list:
    """Table rows (forward, and forward+backward) for one measurement."""
    rows = []
    kinds = [('forward', 'fwd')] + ([('total', 'fwd+bwd')] if backward
                                     else [])
    for key, kind in kinds:
        cells = [f'{res[i][key]:9.3f}' if i in res else f'{"-":>9}'
                 for i in IMPLS]
        speedup = _ratio(res['mmcv'][key], res['segext'][key]) \
            if 'mmcv' in res and 'segext' in res else '     -'
        overhead = _ratio(res['segext'][key], res['conv'][key]) \
            if 'segext' in res and 'conv' in res else '     -'
        runs = '/'.join(str(res[i]['runs']) for i in IMPLS if i in res)
        rows.append(f'| {label:<15} | {kind:<7} | ' + ' | '.join(cells) +
                    f' | {speedup:>12} | {overhead:>11} | {runs:>6} |')
    return rows


HEADER = ('| {:<15} | {:<7} | {:>9} | {:>9} | {:>9} | {:>12} | {:>11} | '
          '{:>6} |').format('input', 'pass', 'conv s', 'segext s', 'mmcv s',
                            'mmcv/segext', 'segext/conv', 'runs')
RULE = '|' + '|'.join('-' * (len(c)) for c in HEADER.split('|')[1:-1]) + '|'


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
                   help='layer part: forward only')
    p.add_argument('--subnet-image', default='800x1216',
                   help='HxW image whose P2-P5 feed the sub-network')
    p.add_argument('--subnet-backward', action='store_true',
                   help='sub-network: also forward+backward (mmcv: ~1-2 '
                   'min per run at 800x1216)')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--max-seconds', type=float, default=8.0,
                   help='stop repeating a cell after this much time')
    p.add_argument('--threads', type=int, default=None,
                   help='torch intra-op threads (default: torch default)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} intra-op '
          f'threads; repeats {args.repeats}, max {args.max_seconds:g} s '
          'per cell; medians in seconds')
    start = time.perf_counter()
    if 'layer' in args.parts:
        backward = not args.no_backward
        print(f'\nOne DCN v1 layer {args.channels}->{args.channels}, 3x3, '
              f'batch {args.batch}')
        print(HEADER)
        print(RULE)
        for text in args.sizes:
            res = bench_deform_conv(
                _parse_size(text), args.channels, args.channels, args.batch,
                args.impls, backward, args.repeats, args.max_seconds)
            for row in format_rows(text, res, backward):
                print(row, flush=True)
    if 'subnet' in args.parts:
        image = _parse_size(args.subnet_image)
        levels = ', '.join(f'{h}x{w}' for h, w in fpn_sizes(image))
        print(f'\nUPSNet shared sub-network 256->256->128->128 over P2-P5 '
              f'({levels}) of a {args.subnet_image} image')
        print(HEADER)
        print(RULE)
        res = bench_subnetwork(image, args.impls, args.subnet_backward,
                               args.repeats, args.max_seconds)
        for row in format_rows('P2-P5', res, args.subnet_backward):
            print(row, flush=True)
    print(f'\ntotal {time.perf_counter() - start:.0f} s')


if __name__ == '__main__':
    main()
