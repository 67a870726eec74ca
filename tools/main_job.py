"""The main job on the embedded default: synthetic data, small models, CPU.

1. writes the synthetic COCO-panoptic dataset (seeded) to ``data/synthetic``
   unless it is already there;
2. trains each model with ``tools/train.py`` at the same budget;
3. evaluates it with ``tools/test.py --show-dir`` (COCO panoptic PQ through
   mmdet's CocoPanopticMetric, overlays through mmdet's visualizer);
4. prints PQ/SQ/RQ (all, things, stuff) side by side.

    python tools/main_job.py                       # the README's main job
    python tools/main_job.py --models panoptic_fpn --max-iters 20

Every run gets its own ``work_dirs/main_job/<timestamp>/``: earlier results
are never overwritten.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: name -> config; the order is the table's order.
MODELS = {
    'panoptic_fpn': 'configs/panoptic_fpn/panoptic-fpn_r18_fpn_synthetic.py',
    'upsnet': 'configs/upsnet/upsnet_r18_fpn_synthetic.py',
}
METRIC_KEYS = ('PQ', 'SQ', 'RQ', 'PQ_th', 'SQ_th', 'RQ_th', 'PQ_st', 'SQ_st',
               'RQ_st')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-root', default='data/synthetic',
                   help='where the synthetic dataset lives / is written')
    p.add_argument('--models', nargs='+', default=None,
                   help=f'subset of {list(MODELS)} (default: all whose '
                   f'config exists)')
    p.add_argument('--max-iters', type=int, default=None,
                   help='override the training budget (same for all models)')
    p.add_argument('--work-dir', default=None,
                   help='default: work_dirs/main_job/<timestamp>')
    p.add_argument('--num-train', type=int, default=64)
    p.add_argument('--num-val', type=int, default=16)
    args = p.parse_args(argv)
    if args.models:
        unknown = [m for m in args.models if m not in MODELS]
        if unknown:
            p.error(f'--models: unknown {unknown}; choose from {list(MODELS)}')
    return args


def run(cmd, log_path):
    """Run a tool, streaming its output to a log file; fail loudly."""
    print('$ ' + ' '.join(cmd), flush=True)
    with open(log_path, 'w') as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-4000:]
        sys.exit(f'main_job: command failed (exit {proc.returncode}); last '
                 f'lines of {log_path}:\n{tail}')


def ensure_data(args):
    marker = osp.join(ROOT, args.data_root, 'annotations',
                      'panoptic_val2017.json')
    if osp.isfile(marker):
        print(f'using the synthetic dataset at {args.data_root}')
        return
    print(f'writing the synthetic dataset to {args.data_root}')
    from segext.datasets.synthetic import generate
    generate(osp.join(ROOT, args.data_root), layout='coco',
             num_train=args.num_train, num_val=args.num_val, seed=0)


def read_test_metrics(work_dir):
    """The scalars mmengine's LoggerHook dumped after the test loop."""
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')),
                   key=osp.getmtime)
    for path in reversed(files):
        with open(path) as f:
            for line in reversed(f.read().splitlines()):
                rec = json.loads(line)
                if any(k.startswith('coco_panoptic/') for k in rec):
                    return {k.split('/', 1)[1]: v for k, v in rec.items()
                            if k.startswith('coco_panoptic/')}
    raise RuntimeError(f'no panoptic metrics found under {work_dir}')


def train_and_test(name, config, args, out_root):
    work_dir = osp.join(out_root, name)
    os.makedirs(work_dir, exist_ok=True)
    opts = [f'train_dataloader.dataset.data_root={args.data_root}/',
            f'val_dataloader.dataset.data_root={args.data_root}/',
            f'test_dataloader.dataset.data_root={args.data_root}/',
            f'val_evaluator.0.ann_file={args.data_root}/annotations/'
            f'panoptic_val2017.json',
            f'val_evaluator.0.seg_prefix={args.data_root}/annotations/'
            f'panoptic_val2017/',
            f'test_evaluator.0.ann_file={args.data_root}/annotations/'
            f'panoptic_val2017.json',
            f'test_evaluator.0.seg_prefix={args.data_root}/annotations/'
            f'panoptic_val2017/']
    # evaluation is tools/test.py's job below: no validation while training
    from mmengine.config import Config
    max_iters = args.max_iters or Config.fromfile(
        osp.join(ROOT, config)).train_cfg.max_iters
    opts += [f'train_cfg.max_iters={max_iters}',
             f'train_cfg.val_interval={max_iters + 1}']
    py = sys.executable
    t0 = time.time()
    run([py, 'tools/train.py', config, '--work-dir', work_dir,
         '--cfg-options'] + opts, osp.join(work_dir, 'train.log'))
    train_s = time.time() - t0
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    t0 = time.time()
    run([py, 'tools/test.py', config, ckpt, '--work-dir', work_dir,
         '--show-dir', 'vis', '--cfg-options'] + opts,
        osp.join(work_dir, 'test.log'))
    test_s = time.time() - t0
    metrics = read_test_metrics(work_dir)
    pngs = sorted(glob.glob(osp.join(work_dir, '*', 'vis', '*.png')))
    return dict(metrics=metrics, train_s=train_s, test_s=test_s, pngs=pngs,
                checkpoint=ckpt)


def print_table(results):
    head = f"{'model':<14}" + ''.join(f'{k:>8}' for k in METRIC_KEYS) + \
        f"{'train s':>9}{'test s':>8}"
    print('\n' + head + '\n' + '-' * len(head))
    for name, r in results.items():
        m = r['metrics']
        print(f'{name:<14}' + ''.join(f'{m.get(k, float("nan")):>8.1f}'
                                      for k in METRIC_KEYS) +
              f"{r['train_s']:>9.0f}{r['test_s']:>8.0f}")
    for name, r in results.items():
        shown = r['pngs'][:3]
        print(f'{name}: {len(r["pngs"])} panoptic overlays, e.g. '
              + ', '.join(osp.relpath(p, ROOT) for p in shown))


def main(argv=None):
    args = parse_args(argv)
    ensure_data(args)
    names = args.models or [n for n, c in MODELS.items()
                            if osp.isfile(osp.join(ROOT, c))]
    out_root = args.work_dir or osp.join(
        'work_dirs', 'main_job', time.strftime('%Y%m%d_%H%M%S'))
    results = {}
    for name in names:
        print(f'\n=== {name}: {MODELS[name]}', flush=True)
        results[name] = train_and_test(name, MODELS[name], args, out_root)
    print_table(results)
    with open(osp.join(ROOT, out_root, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    print(f'\nresults: {osp.join(out_root, "results.json")}')


if __name__ == '__main__':
    main()
