#!/usr/bin/env python
"""DRN vs mmseg's dilated ResNet (D8) backbones: CPU latency and peak memory.

    python tools/analysis_tools/benchmark_drn.py     # 512x1024, 3 rounds

Pairs (both output stride 8, batch 1, inference, backbone only):
DRN-D-22 vs ResNet-18-D8 and DRN-C-26 vs ResNet-34-D8, where ResNet-X-D8 is
mmseg's ``ResNetV1c`` with strides (1, 2, 1, 1), dilations (1, 1, 2, 4) and
``contract_dilation=True`` (``configs/_base_/models/*_r50-d8.py``).

Method -- every measurement runs in a FRESH subprocess per model, and the
models are interleaved: round r runs all models in order, the next round in
reverse order; reported numbers are medians over rounds.
* latency: wall time of ``model(x)`` under ``torch.no_grad()`` after the
  two untimed forwards below, median of ``--iters`` forwards.
* peak memory of a full-size forward (after a 32x32 one that loads
  lazily initialised kernels), two ways -- torch's CPU
  allocations are invisible to ``tracemalloc`` and ``max_memory_allocated``
  is CUDA-only:
  - *peak tensor memory*: ``torch.profiler`` with ``profile_memory=True``
    records every CPU allocator (de)allocation; the maximum of their running
    sum in time order is the exact peak of live tensor bytes the forward
    added (activations, workspaces, the output), weights and input excluded.
  - *peak RssAnon increase*: what the OS sees -- anonymous resident memory
    sampled every 2 ms by a thread during the FIRST full-size forward,
    minus its value before (includes allocator slack; excludes file-backed
    library pages, which ``VmHWM`` would count).  The first forward of a
    fresh process, because glibc keeps freed blocks, which would hide later
    peaks; the profiled forward comes second (profiler buffers are
    anonymous memory too).
* MACs: multiply-accumulates of every conv, from the output shapes of a
  forward on the ``meta`` device (no compute).
* ``--threads`` (default 1) intra-op threads: the 2 cores of the dev box are
  shared, and a single thread keeps the comparison stable.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# name -> backbone config (mmseg registry)
MODELS = {
    'DRN-D-22': dict(type='DRN', arch='D', depth=22, out_indices=(7, )),
    'ResNet-18-D8': dict(
        type='ResNetV1c', depth=18, out_indices=(3, ), strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4), contract_dilation=True),
    'DRN-C-26': dict(type='DRN', arch='C', depth=26, out_indices=(7, )),
    'ResNet-34-D8': dict(
        type='ResNetV1c', depth=34, out_indices=(3, ), strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4), contract_dilation=True),
}
PAIRS = [('DRN-D-22', 'ResNet-18-D8'), ('DRN-C-26', 'ResNet-34-D8')]
# --macs-only also lists the output-stride-32 ResNet-18 of mmdet's FPN
# configs (configs/panoptic_fpn/panoptic-fpn_r18_fpn_synthetic.py).
EXTRA_MACS = {'ResNet-18': dict(type='ResNet', depth=18, out_indices=(3, ))}


def _build(name):
    import segext  # noqa: F401  registers DRN
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS as SEG_MODELS
    init_default_scope('mmseg')
    return SEG_MODELS.build(dict({**MODELS, **EXTRA_MACS}[name]))


def _proc_kb(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


class _RssAnonPeak:
    """Samples ``RssAnon`` every ``interval`` s in a thread (torch's kernels
    release the GIL), keeping the maximum."""

    def __init__(self, interval=0.002):
        import threading
        self.interval, self.peak = interval, _proc_kb('RssAnon')
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _proc_kb('RssAnon'))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _proc_kb('RssAnon'))


def _allocator_peak_bytes(prof) -> int:
    """Peak of (allocated - freed) bytes over the profiled region, from the
    CPU allocator's memory events, in time order."""
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == '[memory]' and e.device_type().name == 'CPU')
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def worker(name, size, iters, threads):
    """One fresh process, one model: params, peak memory, latencies."""
    import gc

    import torch
    from torch.profiler import ProfilerActivity, profile
    torch.set_num_threads(threads)
    model = _build(name)
    model.eval()  # (mmseg's ResNet.train() returns None: no chaining)
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():  # load kernels/libraries lazily initialised on
        model(torch.rand(1, 3, 32, 32))  # the first call: not the forward's
    x = torch.rand(1, 3, *size)
    gc.collect()
    rss_before = _proc_kb('RssAnon')
    with torch.no_grad(), _RssAnonPeak() as rss:  # OS view, fresh heap
        out_shape = list(model(x)[-1].shape)
    gc.collect()
    with torch.no_grad(), profile(  # exact tensor bytes, any heap state
            activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(x)
    alloc_peak = _allocator_peak_bytes(prof)
    del prof
    times = []
    with torch.no_grad():
        for _ in range(iters):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return dict(name=name, params=params, alloc_mib=alloc_peak / 2**20,
                rss_mib=(rss.peak - rss_before) / 1024, times_s=times,
                latency_s=statistics.median(times), out_shape=out_shape)


def conv_gmacs(name, size):
    import torch
    from torch import nn
    with torch.device('meta'):
        model = _build(name)
    model.eval()
    macs = []

    def hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        macs.append(out.numel() * k * m.in_channels // m.groups)

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.empty(1, 3, *size, device='meta'))
    return sum(macs) / 1e9


def run_worker(name, args):
    cmd = [sys.executable, osp.abspath(__file__), '--worker', name,
           '--size', str(args.size[0]), str(args.size[1]),
           '--iters', str(args.iters), '--threads', str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads), PYTHONWARNINGS='ignore')
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f'worker {name} failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, nargs=2, default=[512, 1024],
                        metavar=('H', 'W'))
    parser.add_argument('--rounds', type=int, default=3,
                        help='interleaved fresh-process rounds (median)')
    parser.add_argument('--iters', type=int, default=3,
                        help='timed forwards per process (median)')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--macs-only', action='store_true',
                        help='only print parameters and conv GMACs (fast)')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, tuple(args.size), args.iters,
                                args.threads)))
        return
    names = [n for pair in PAIRS for n in pair]
    if args.macs_only:
        _build('DRN-D-22')  # registers DRN in this process
        import torch
        print(f'input 1x3x{args.size[0]}x{args.size[1]}')
        print('| backbone | params | conv GMACs |')
        print('|---|---:|---:|')
        for name in names + list(EXTRA_MACS):
            with torch.device('meta'):
                n = sum(p.numel() for p in _build(name).parameters())
            print(f'| {name} | {n:,} | '
                  f'{conv_gmacs(name, tuple(args.size)):.1f} |')
        return
    print(f'input 1x3x{args.size[0]}x{args.size[1]}, batch 1, CPU, '
          f'{args.threads} thread(s), {args.rounds} interleaved rounds x '
          f'{args.iters} timed forwards, torch.no_grad()', flush=True)
    runs = {n: [] for n in names}
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            res = run_worker(name, args)
            runs[name].append(res)
            print(f'  round {r + 1}: {name:13s} latency '
                  f'{res["latency_s"]:.3f} s  tensors {res["alloc_mib"]:.0f} '
                  f'MiB  RssAnon +{res["rss_mib"]:.0f} MiB', flush=True)
    summary = {}
    for name in names:
        rs = runs[name]
        summary[name] = dict(
            params=rs[0]['params'],
            gmacs=conv_gmacs(name, tuple(args.size)),
            latency=statistics.median(r['latency_s'] for r in rs),
            alloc=statistics.median(r['alloc_mib'] for r in rs),
            rss=statistics.median(r['rss_mib'] for r in rs),
            out=rs[0]['out_shape'])
    print()
    print('| backbone | params | conv GMACs | output | latency (s) | '
          'peak tensor memory (MiB) | peak RssAnon increase (MiB) |')
    print('|---|---:|---:|---|---:|---:|---:|')
    for name in names:
        s = summary[name]
        print(f'| {name} | {s["params"]:,} | {s["gmacs"]:.1f} | '
              f'{"x".join(map(str, s["out"][1:]))} | {s["latency"]:.2f} | '
              f'{s["alloc"]:.0f} | {s["rss"]:.0f} |')
    print()
    print('| DRN / ResNet-D8 | params | conv GMACs | latency | '
          'peak tensor memory | peak RssAnon increase |')
    print('|---|---:|---:|---:|---:|---:|')
    for a, b in PAIRS:
        sa, sb = summary[a], summary[b]
        print(f'| {a} / {b} | {sa["params"] / sb["params"]:.2f} | '
              f'{sa["gmacs"] / sb["gmacs"]:.2f} | '
              f'{sa["latency"] / sb["latency"]:.2f} | '
              f'{sa["alloc"] / sb["alloc"]:.2f} | '
              f'{sa["rss"] / sb["rss"]:.2f} |')


if __name__ == '__main__':
    main()
