"""UPSNet vs Panoptic FPN on the synthetic data over several training seeds.

Both configs share data, schedule, backbone, FPN, RPN and RoI heads (the
Panoptic FPN config inherits the UPSNet one and swaps the semantic and
panoptic heads).  Every (model, seed) pair is trained with ``tools/train.py``
and tested with ``tools/test.py``; the tool prints the per-seed PQ / PQ_th /
PQ_st, mean +- std per model, and says whether the difference of the means
exceeds the seed spread.  ``results.json`` is rewritten after every run, so
an interrupted comparison keeps what it finished (``--resume`` reuses it).

    python tools/analysis_tools/compare_panoptic.py            # = make compare
    python tools/analysis_tools/compare_panoptic.py --seeds 0 1 2 --jobs 1
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

from segext.utils.panoptic_runs import (ensure_synthetic, montage,  # noqa: E402
                                        overlay_panels, train_and_test)

MODELS = {
    'panoptic_fpn':
    'configs/panoptic_fpn/panoptic-fpn_r18-half_fpn_360it_synthetic-128x96.py',
    'upsnet': 'configs/upsnet/upsnet_r18-half_fpn_360it_synthetic-128x96.py',
}
TITLES = {'panoptic_fpn': 'Panoptic FPN', 'upsnet': 'UPSNet'}
SHOWN = ('PQ', 'PQ_th', 'PQ_st')
NUM_SHOWN = 4


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4],
                   help='training seeds (randomness.seed); the data is fixed')
    p.add_argument('--models', nargs='+', default=list(MODELS),
                   choices=list(MODELS), help='models to run (default: both)')
    p.add_argument('--data-root', default='data/synthetic_128x96')
    p.add_argument('--num-train', type=int, default=128)
    p.add_argument('--num-val', type=int, default=128,
                   help='validation images written if the data is missing')
    p.add_argument('--max-iters', type=int, default=None,
                   help="override the configs' (shared) training budget")
    p.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1),
                   help='runs in parallel; each gets cores // jobs threads '
                   '(default: 2 on 2 or more cores, i.e. one thread each on a '
                   '2-core machine, as the documented numbers were taken)')
    p.add_argument('--work-dir', default=None,
                   help='default: work_dirs/compare_panoptic/<timestamp>')
    p.add_argument('--resume', action='store_true',
                   help='keep the runs already in --work-dir/results.json')
    args = p.parse_args(argv)
    if len(set(args.seeds)) < 2:
        p.error(f'--seeds: need at least 2 different seeds for a spread, '
                f'got {args.seeds}')
    if args.jobs < 1:
        p.error(f'--jobs: expected a positive int, got {args.jobs}')
    if args.resume and not args.work_dir:
        p.error('--resume needs the --work-dir of the earlier comparison')
    return args


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values)
                                     if len(values) > 1 else float('nan'))


def summarise(runs, seeds):
    """Per model: {metric: (mean, std)} over the seeds that finished."""
    out = {}
    for name in MODELS:
        done = [runs[f'{name}/{s}']['metrics'] for s in seeds
                if f'{name}/{s}' in runs]
        if done:
            out[name] = {k: mean_std([m[k] for m in done]) for k in SHOWN}
            out[name]['n'] = len(done)
    return out


def print_tables(runs, seeds, summary):
    head = f"{'model':<14}{'seed':>6}" + ''.join(f'{k:>8}' for k in SHOWN)
    print('\n' + head + '\n' + '-' * len(head))
    for name in MODELS:
        for s in seeds:
            r = runs.get(f'{name}/{s}')
            if r:
                print(f'{name:<14}{s:>6}' + ''.join(
                    f"{r['metrics'][k]:>8.1f}" for k in SHOWN))
    print('\n' + f"{'model':<14}{'seeds':>6}" +
          ''.join(f'{k + " mean+-std":>18}' for k in SHOWN))
    for name, stats in summary.items():
        print(f"{name:<14}{stats['n']:>6}" + ''.join(
            f'{stats[k][0]:>11.1f} +-{stats[k][1]:>4.1f}' for k in SHOWN))


def verdict(summary):
    """One line per metric: the difference of means vs the larger std."""
    if len(summary) < 2 or min(s['n'] for s in summary.values()) < 2:
        return ['not enough finished seeds for a verdict']
    up, pf = summary['upsnet'], summary['panoptic_fpn']
    lines = []
    for k in SHOWN:
        diff = up[k][0] - pf[k][0]
        spread = max(up[k][1], pf[k][1])
        lead = 'UPSNet' if diff > 0 else 'Panoptic FPN'
        lines.append(
            f'{k}: UPSNet - Panoptic FPN = {diff:+.1f}; the larger seed std '
            f'is {spread:.1f}: ' +
            (f'{lead} is ahead by more than the spread' if abs(diff) > spread
             else 'the difference is within the seed spread'))
    return lines


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    data_root = osp.join(ROOT, args.data_root)
    if ensure_synthetic(data_root, size=(96, 128), num_train=args.num_train,
                        num_val=args.num_val):
        print(f'wrote the synthetic dataset to {args.data_root}', flush=True)
    out_root = osp.join(ROOT, args.work_dir or osp.join(
        'work_dirs', 'compare_panoptic', time.strftime('%Y%m%d_%H%M%S')))
    results_path = osp.join(out_root, 'results.json')
    runs = {}
    if args.resume and osp.isfile(results_path):
        with open(results_path) as f:
            runs = json.load(f)['runs']
    os.makedirs(out_root, exist_ok=True)
    todo = [(name, s) for s in args.seeds for name in args.models
            if f'{name}/{s}' not in runs]
    # configs are parsed here, once, not in the worker threads: mmengine's
    # Config.fromfile is not thread-safe (a parallel parse can fail)
    iters = {name: args.max_iters or Config.fromfile(
        osp.join(ROOT, MODELS[name])).train_cfg['max_iters']
        for name in args.models}
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 \
        else None
    print(f'{len(todo)} runs ({len(args.seeds)} seeds x {len(args.models)} '
          f'models), {args.jobs} at a time; logs in '
          f'{osp.relpath(out_root, ROOT)}', flush=True)

    lock = threading.Lock()

    def one(job):
        name, seed = job
        tag = f'{name} s{seed}'
        try:
            result = train_and_test(
                MODELS[name], osp.join(out_root, f'{name}_seed{seed}'), ROOT,
                tag, data_root=args.data_root, seed=seed,
                max_iters=iters[name], threads=threads,
                show=seed == args.seeds[0])  # the picture's runs only
        except BaseException as err:  # noqa: B036 (sys.exit of a failed tool)
            first = str(err).splitlines()[0] if str(err) else repr(err)
            print(f'{tag}: FAILED: {first}', flush=True)  # tail: in the log
            raise
        m = result['metrics']
        print(f'{tag}: PQ {m["PQ"]:.1f}  PQ_th {m["PQ_th"]:.1f}  '
              f'PQ_st {m["PQ_st"]:.1f}', flush=True)
        with lock:
            runs[f'{name}/{seed}'] = result
            with open(results_path, 'w') as f:
                json.dump(dict(seeds=args.seeds, runs=runs), f, indent=1)

    with ThreadPoolExecutor(args.jobs) as pool:
        failed = [f for f in [pool.submit(one, job) for job in todo]
                  if f.exception() is not None]
    if failed:
        sys.exit(f'compare_panoptic: {len(failed)} run(s) failed (see above); '
                 f'the finished ones are in {results_path}: rerun with '
                 f'--resume --work-dir {osp.relpath(out_root, ROOT)}')

    summary = summarise(runs, args.seeds)
    print_tables(runs, args.seeds, summary)
    lines = verdict(summary)
    print('\n' + '\n'.join(lines))
    if set(args.models) != set(MODELS):
        return
    seed = args.seeds[0]
    pngs = {n: runs[f'{n}/{seed}']['pngs'][:NUM_SHOWN] for n in MODELS}
    rows = [overlay_panels(p, data_root)[:2] +
            [overlay_panels(pngs[n][i], data_root)[2] for n in MODELS]
            for i, p in enumerate(pngs['upsnet'])]
    picture = montage(rows, ['image', 'ground truth'] +
                      [TITLES[n] for n in MODELS],
                      osp.join(out_root, f'compare_seed{seed}.png'))
    wall_s = time.time() - t0
    cpu_s = sum(r['cpu_s'] for r in runs.values())
    print(f'\ntime: {wall_s / 60:.1f} min end to end ({cpu_s / 60:.1f} '
          f'CPU-min in the tools)')
    print(f'picture (image | ground truth | Panoptic FPN | UPSNet, seed '
          f'{seed}): {osp.relpath(picture, ROOT)}')
    with open(results_path, 'w') as f:
        json.dump(dict(seeds=args.seeds, runs=runs, summary=summary,
                       verdict=lines, wall_s=wall_s), f, indent=1)
    print(f'results: {osp.relpath(results_path, ROOT)}')


if __name__ == '__main__':
    main()
