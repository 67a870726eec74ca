"""The main job on the embedded default: UPSNet on synthetic data, CPU.

1. writes the seeded synthetic COCO-panoptic dataset (128x96 images, 128
   train / 128 val) to ``data/synthetic_128x96`` unless it is already there;
2. trains UPSNet (R-18 at half width, FPN, 360 iterations) with
   ``tools/train.py``, streaming iteration / loss / ETA to the terminal
   (the full log goes to ``train.log``);
3. evaluates it with ``tools/test.py --show-dir`` (mmdet's
   ``CocoPanopticMetric``, class-wise);
4. prints PQ/SQ/RQ (all, things, stuff), the per-class PQ, the time, and one
   picture: image | ground truth | UPSNet for a few val images.

    python tools/main_job.py                 # = make demo
    python tools/main_job.py --seed 1        # another training seed
    python tools/main_job.py --max-iters 20  # a smoke run

UPSNet vs Panoptic FPN over several seeds is its own command:
``make compare`` (``tools/analysis_tools/compare_panoptic.py``).
Every run gets its own ``work_dirs/main_job/<timestamp>/``: earlier results
are never overwritten.
"""
import argparse
import json
import os.path as osp
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

from segext.utils.panoptic_runs import (ensure_synthetic, montage,  # noqa: E402
                                        overlay_panels, train_and_test)

CONFIG = 'configs/upsnet/upsnet_r18-half_fpn_360it_synthetic-128x96.py'
DATA_ROOT = 'data/synthetic_128x96'
#: generator arguments of the data the config expects, (H, W) as generate()
DATA = dict(size=(96, 128), num_train=128, num_val=128)
NUM_SHOWN = 4


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', default=CONFIG, help='a panoptic config')
    p.add_argument('--data-root', default=DATA_ROOT,
                   help='where the synthetic dataset lives / is written')
    p.add_argument('--seed', type=int, default=0,
                   help='training seed (randomness.seed); the data is fixed')
    p.add_argument('--max-iters', type=int, default=None,
                   help="override the config's training budget")
    p.add_argument('--threads', type=int, default=None,
                   help='torch threads of the tools (OMP_NUM_THREADS; default: '
                   "torch's, one per core). On a busy machine 1 is faster")
    p.add_argument('--work-dir', default=None,
                   help='default: work_dirs/main_job/<timestamp>')
    args = p.parse_args(argv)
    if args.max_iters is not None and args.max_iters < 1:
        p.error(f'--max-iters: expected a positive int, got {args.max_iters}')
    if args.threads is not None and args.threads < 1:
        p.error(f'--threads: expected a positive int, got {args.threads}')
    if not osp.isfile(osp.join(ROOT, args.config)):
        p.error(f'--config: no such file {args.config!r}')
    return args


def print_report(result, wall_s, picture):
    m = result['metrics']
    print('\n' + f"{'':<8}{'PQ':>7}{'SQ':>7}{'RQ':>7}")
    for name, suffix in (('all', ''), ('things', '_th'), ('stuff', '_st')):
        print(f'{name:<8}' + ''.join(f"{m[k + suffix]:>7.1f}"
                                     for k in ('PQ', 'SQ', 'RQ')))
    if result['classwise']:
        print('\nper class   ' + '  '.join(
            f'{c} {v["PQ"]:.1f}' for c, v in result['classwise'].items()))
    print(f"\ntime: {wall_s / 60:.1f} min end to end (train "
          f"{result['train_s']:.0f} s, test {result['test_s']:.0f} s; "
          f"{result['cpu_s']:.0f} CPU-s in the tools)")
    print(f'picture (image | ground truth | UPSNet): {picture}')


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    data_root = osp.join(ROOT, args.data_root)
    if ensure_synthetic(data_root, **DATA):
        print(f'wrote the synthetic dataset to {args.data_root}', flush=True)
    out_root = osp.join(ROOT, args.work_dir or osp.join(
        'work_dirs', 'main_job', time.strftime('%Y%m%d_%H%M%S')))
    print(f'UPSNet on {args.data_root}: {args.config} (seed {args.seed}); '
          f'logs in {osp.relpath(out_root, ROOT)}', flush=True)
    result = train_and_test(args.config, osp.join(out_root, 'upsnet'), ROOT,
                            'upsnet', data_root=args.data_root,
                            seed=args.seed, max_iters=args.max_iters,
                            threads=args.threads)
    shown = result['pngs'][:NUM_SHOWN]
    rows = [overlay_panels(p, data_root) for p in shown]
    picture = montage(rows, ['image', 'ground truth', 'UPSNet'],
                      osp.join(out_root, 'upsnet_val.png'))
    wall_s = time.time() - t0
    print_report(result, wall_s, osp.relpath(picture, ROOT))
    result.update(wall_s=wall_s, picture=picture)
    with open(osp.join(out_root, 'results.json'), 'w') as f:
        json.dump(result, f, indent=1)
    print(f"results: {osp.relpath(osp.join(out_root, 'results.json'), ROOT)}")


if __name__ == '__main__':
    main()
