#!/usr/bin/env python
"""What SegNet's compact pooling indices buy at inference, side by side.

    python tools/analysis_tools/benchmark_segnet.py            # 4×3×360×480
    python tools/analysis_tools/benchmark_segnet.py --rounds 5 --json out.json

Three networks with the same convolutions and widths (random weights; the
compared quantities do not depend on them), on CPU, ``torch.no_grad()``:

* ``compact``: segext SegNet — ``SegNetVGG`` + ``SegNetHead``; the decoder
  gets 2-bit packed pooling indices.
* ``int64``: the SAME modules with ``SegNetVGG(compact_indices=False)``:
  torch's ``max_pool2d(return_indices=True)`` int64 indices and
  ``max_unpool2d``.  Its logits must equal ``compact``'s exactly (checked).
* ``unet``: U-Net-style: the decoder keeps every encoder stage's pre-pool
  feature map instead of indices; each decoder stage upsamples by
  parameter-free nearest ×2 (cropped to the skip's size) and concatenates
  the skip, so its first conv reads 2× the channels; otherwise the same
  widths.

Measured:

* stored bytes: what the encoder hands the decoder besides the deepest
  feature (indices, or skip features);
* peak memory, each network in a FRESH subprocess (so the allocator state of
  one model cannot help or hurt another): (1) ``peak alloc``: the highest
  total of tensor bytes allocated during the forward, from
  ``torch.profiler`` (``profile_memory=True``, the "Total Allocated" of its
  memory events) — CPU tensors are invisible to ``tracemalloc``, which only
  sees Python's own allocator; (2) ``peak RSS``: the process's resident-set
  high-water mark during the forward minus its RSS before it (the HWM is
  reset through ``/proc/self/clear_refs`` when allowed; ``ru_maxrss`` is
  printed too) — what the OS really had to provide, allocator slack
  included;
* latency: all networks in this process, interleaved round by round (after
  one warm-up round), median wall time and median process CPU time.

``--ops`` instead times the pooling and unpooling ops alone on SegNet's
largest map (stage 1: batch × 64 × H × W), interleaved: torch's int64 path,
segext's compact path (torch's pooling kernel + 2-bit conversion), and the
alternative segext did not take — finding each window's argmax directly with
four strided comparisons against the pooled map.
"""
import argparse
import gc
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcv.cnn import ConvModule  # noqa: E402

import segext  # noqa: E402,F401
from segext.models.backbones import SegNetVGG  # noqa: E402
from segext.models.decode_heads import SegNetHead  # noqa: E402

VARIANTS = ('compact', 'int64', 'unet')


class SegNet(nn.Module):
    """SegNet encoder + decoder, as ``EncoderDecoder._forward`` runs them."""

    def __init__(self, num_classes: int, compact_indices: bool = True):
        super().__init__()
        self.backbone = SegNetVGG(compact_indices=compact_indices)
        self.decode_head = SegNetHead(num_classes=num_classes)

    def stored_bytes(self, encoded) -> int:
        return sum(i.nbytes for i in encoded.pool_indices)

    def encode(self, x):
        return self.backbone(x)

    def decode(self, encoded):
        return self.decode_head(encoded)


class UNetStyle(SegNet):
    """The U-Net-style comparison: skips instead of indices (module doc)."""

    def __init__(self, num_classes: int):
        super().__init__(num_classes)
        head = self.decode_head
        widths = reversed(head.stage_channels)
        for stage, width in zip(head.stages, widths):
            first = stage[0]
            stage[0] = ConvModule(
                2 * width, first.conv.out_channels, 3, padding=1,
                norm_cfg=head.norm_cfg, act_cfg=head.act_cfg)

    def stored_bytes(self, encoded) -> int:
        skips, _ = encoded
        return sum(s.numel() * s.element_size() for s in skips)

    def encode(self, x):
        skips = []
        for stage in self.backbone.stages:
            x = stage(x)
            skips.append(x)  # (N, C_s, H_s, W_s), kept for the decoder
            x = F.max_pool2d(x, 2, 2, ceil_mode=self.backbone.ceil_mode)
        return skips, x

    def decode(self, encoded):
        skips, x = encoded
        for stage in self.decode_head.stages:
            skip = skips.pop()  # drop each skip once used
            x = F.interpolate(x, scale_factor=2., mode='nearest')
            x = x[..., :skip.shape[-2], :skip.shape[-1]]
            x = stage(torch.cat([x, skip], dim=1))
            del skip
        return self.decode_head.cls_seg(x)


def build(variant: str, num_classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if variant == 'unet':
        model = UNetStyle(num_classes)
    else:
        model = SegNet(num_classes, compact_indices=variant == 'compact')
    return model.eval()


def forward(model, x):
    return model.decode(model.encode(x))


def _status_kb(key: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise KeyError(key)


def child(args) -> dict:
    """One network, fresh process: stored bytes and peak memory."""
    torch.set_num_threads(args.threads)
    model = build(args.child, args.num_classes)
    x = torch.randn(args.batch, 3, *args.size)
    gc.collect()
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset VmHWM to the current RSS
        hwm_reset = True
    except OSError:
        hwm_reset = False
    rss_before = _status_kb('VmRSS')
    with torch.no_grad():
        encoded = model.encode(x)
        stored = model.stored_bytes(encoded)
        out = model.decode(encoded)
    peak_rss = _status_kb('VmHWM')
    del out, encoded
    gc.collect()
    from torch.profiler import ProfilerActivity, profile
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU],
                                  profile_memory=True) as prof:
        out = forward(model, x)
    del out
    with tempfile.TemporaryDirectory() as tmp:
        trace = osp.join(tmp, 'trace.json')
        prof.export_chrome_trace(trace)
        with open(trace) as f:
            events = json.load(f)['traceEvents']
    peak_alloc = max((e['args']['Total Allocated'] for e in events
                      if e.get('name') == '[memory]'), default=0)
    return dict(variant=args.child, stored_bytes=stored,
                peak_alloc_bytes=peak_alloc,
                rss_before_kb=rss_before, peak_rss_kb=peak_rss,
                peak_rss_delta_kb=peak_rss - rss_before, hwm_reset=hwm_reset,
                ru_maxrss_kb=resource.getrusage(
                    resource.RUSAGE_SELF).ru_maxrss)


def measure_memory(args) -> dict:
    results = {}
    for variant in args.variants:
        cmd = [sys.executable, osp.abspath(__file__), '--child', variant,
               '--batch', str(args.batch), '--size', *map(str, args.size),
               '--num-classes', str(args.num_classes),
               '--threads', str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        line = [ln for ln in out.stdout.splitlines()
                if ln.startswith('RESULT ')][-1]
        results[variant] = json.loads(line[len('RESULT '):])
        print(f'  memory: {variant} done', flush=True)
    return results


def measure_latency(args) -> dict:
    torch.set_num_threads(args.threads)
    models = {v: build(v, args.num_classes) for v in args.variants}
    if 'compact' in models and 'int64' in models:
        models['int64'].load_state_dict(models['compact'].state_dict())
    x = torch.randn(args.batch, 3, *args.size)
    wall = {v: [] for v in models}
    cpu = {v: [] for v in models}
    outs = {}
    with torch.no_grad():
        for r in range(args.rounds + 1):  # round 0 warms up
            for v, model in models.items():
                w0, c0 = time.perf_counter(), time.process_time()
                out = forward(model, x)
                w1, c1 = time.perf_counter(), time.process_time()
                if r:
                    wall[v].append(w1 - w0)
                    cpu[v].append(c1 - c0)
                else:
                    outs[v] = out
                del out
            print(f'  latency: round {r}/{args.rounds} done', flush=True)
    same = None
    if 'compact' in outs and 'int64' in outs:
        same = torch.equal(outs['compact'], outs['int64'])
    return dict(wall=wall, cpu=cpu, compact_equals_int64=same)


def report(args, mem, lat):
    mb = 2.**20
    ref = 'int64'
    print(f'\nSegNet inference, batch {args.batch}, {args.size[0]}x'
          f'{args.size[1]}, CPU, {args.threads} thread(s), torch '
          f'{torch.__version__}; latency: median of {args.rounds} '
          'interleaved rounds')
    head = (f'{"variant":9s} {"stored (MiB)":>12s} {"peak alloc (MiB)":>16s} '
            f'{"peak RSS delta (MiB)":>20s} {"wall (s)":>9s} {"cpu (s)":>8s}')
    print(head)
    print('-' * len(head))
    rows = {}
    for v in args.variants:
        m, w, c = mem[v], statistics.median(lat['wall'][v]), \
            statistics.median(lat['cpu'][v])
        rows[v] = dict(stored=m['stored_bytes'], alloc=m['peak_alloc_bytes'],
                       rss=m['peak_rss_delta_kb'] * 1024, wall=w, cpu=c)
        print(f'{v:9s} {m["stored_bytes"] / mb:12.2f} '
              f'{m["peak_alloc_bytes"] / mb:16.1f} '
              f'{m["peak_rss_delta_kb"] / 1024:20.1f} {w:9.2f} {c:8.2f}')
    if ref in rows:
        print(f'\nratios to {ref} (torch int64 indices):')
        for v in args.variants:
            r, b = rows[v], rows[ref]
            print(f'  {v:9s} stored {r["stored"] / b["stored"]:.5f} '
                  f'(1/{b["stored"] / r["stored"]:.1f})  peak alloc '
                  f'{r["alloc"] / b["alloc"]:.3f}  peak RSS '
                  f'{r["rss"] / b["rss"]:.3f}  wall '
                  f'{r["wall"] / b["wall"]:.3f}  cpu {r["cpu"] / b["cpu"]:.3f}')
    if lat['compact_equals_int64'] is not None:
        print('\ncompact logits == int64 logits: '
              f'{lat["compact_equals_int64"]}')
    print('ru_maxrss (KiB, whole child process incl. model build): ' +
          ', '.join(f'{v} {mem[v]["ru_maxrss_kb"]}' for v in args.variants))
    return rows


def _window_argmax_direct(x):
    """The rejected alternative: max_pool2d, then the window position of the
    FIRST maximum by comparing the 4 strided views (last match written
    first).  Same codes as segext's (checked), without torch's indices."""
    from segext.models.layers.unpool import pack_window_codes
    pooled = F.max_pool2d(x, 2, 2)
    codes = torch.zeros(pooled.shape, dtype=torch.uint8)
    for code in (3, 2, 1, 0):
        part = x[..., code // 2::2, code % 2::2]
        codes.masked_fill_(part == pooled, code)
    return pooled, pack_window_codes(codes)


def measure_ops(args):
    from segext.models.layers import (max_pool2d_compact,
                                      max_unpool2d_compact)
    torch.set_num_threads(args.threads)
    height, width = (s - s % 2 for s in args.size)
    x = torch.randn(args.batch, 64, height, width)
    with torch.no_grad():
        pooled, flat = F.max_pool2d(x, 2, 2, return_indices=True)
        _, compact = max_pool2d_compact(x)
        size = compact.pre_pool_size
        assert torch.equal(_window_argmax_direct(x)[1], compact.data)
        ops = {
            'pool  torch int64': lambda: F.max_pool2d(
                x, 2, 2, return_indices=True),
            'pool  segext compact': lambda: max_pool2d_compact(x),
            'pool  direct argmax': lambda: _window_argmax_direct(x),
            'unpool torch int64': lambda: F.max_unpool2d(
                pooled, flat, 2, 2, output_size=size),
            'unpool segext compact': lambda: max_unpool2d_compact(
                pooled, compact),
        }
        times = {k: [] for k in ops}
        for r in range(args.rounds + 1):
            for name, op in ops.items():
                t0 = time.perf_counter()
                op()
                if r:
                    times[name].append(time.perf_counter() - t0)
    print(f'stage-1 map {args.batch}x64x{height}x{width}, '
          f'{args.threads} thread(s), {args.rounds} interleaved rounds')
    print(f'{"op":24s} {"median (ms)":>12s} {"min (ms)":>10s}')
    for name, t in times.items():
        print(f'{name:24s} {statistics.median(t) * 1e3:12.1f} '
              f'{min(t) * 1e3:10.1f}')
    return times


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--size', type=int, nargs=2, default=(360, 480),
                        metavar=('H', 'W'))
    parser.add_argument('--num-classes', type=int, default=11)
    parser.add_argument('--rounds', type=int, default=3,
                        help='timed latency rounds (after 1 warm-up round)')
    parser.add_argument('--threads', type=int,
                        default=torch.get_num_threads())
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                        choices=VARIANTS)
    parser.add_argument('--ops', action='store_true',
                        help='time the pooling/unpooling ops alone')
    parser.add_argument('--json', help='also write the numbers here')
    parser.add_argument('--child', choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch < 1 or args.rounds < 1 or min(args.size) < 1:
        parser.error('--batch, --rounds and --size must be positive')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print('RESULT ' + json.dumps(child(args)))
        return
    if args.ops:
        measure_ops(args)
        return
    print('measuring memory (one fresh subprocess per network) ...',
          flush=True)
    mem = measure_memory(args)
    print('measuring latency (interleaved) ...', flush=True)
    lat = measure_latency(args)
    rows = report(args, mem, lat)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), memory=mem, latency=lat,
                           summary=rows), f, indent=1)


if __name__ == '__main__':
    main()
