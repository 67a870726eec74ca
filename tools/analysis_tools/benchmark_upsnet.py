"""UPSNet vs Panoptic FPN on CPU, side by side in ONE run.

Prints medians over interleaved repeats, and ratios:

0. ``dense``: the dense part (backbone + FPN + semantic head; the RoI heads
   are the same in both models) at 640x480 and 1216x800: GMACs of each pass
   -- the forward by mmengine's ``FlopAnalyzer``, forward + backward by
   torch's ``FlopCounterMode`` on the training step (what autograd runs:
   frozen layers have no backward) -- with UPSNet's deformable layers
   counted as plain convs of the same shape, i.e. on a twin built with
   ``semantic_head.conv_cfg=None``; the FLOP ratio, the time ratio of the
   forward and of forward + backward (semantic losses included), and the
   efficiency ``time ratio / FLOP ratio`` (issue 13: target <= 1.15), and
   the same for the twin itself (UPSNet with plain convs: what is left when
   the deformable layers cost what plain convs do, i.e. the rest of the
   head -- full-resolution ``L_sem``, concatenation, RoI loss); the whole
   models' inference and train-step ratios beside it, all interleaved in
   one run;
1. whole models with the same R50-FPN backbone (COCO configs, 133 classes) at
   800x1216 and at the toy configs' size (256x192): inference time with a
   breakdown (features, RPN, RoI heads, semantic head, panoptic fusion) and a
   train step (forward + backward);
2. segext's CPU deformable convolution vs mmcv's CPU kernel (forward,
   forward + backward) at P2..P5 of 800x1216 and for UPSNet's whole shared
   sub-network (from benchmark_deform_conv.py);
3. the panoptic head alone vs mmdet's HeuristicFusionHead at 10/50/100
   instances (800x1216, 133 classes), with and without the mask pasting
   Panoptic FPN needs before its fusion.

Targets (issue 3): deformable conv >= 3x faster than mmcv on CPU; panoptic
head <= 0.5x the heuristic fusion at 100 instances; UPSNet inference <= 2x
Panoptic FPN on CPU. Issue 13: dense-part efficiency <= 1.15 (where the time
goes: ``profile_upsnet_dense.py``).

    python tools/analysis_tools/benchmark_upsnet.py             # everything
    python tools/analysis_tools/benchmark_upsnet.py --parts dense --repeats 5
    python tools/analysis_tools/benchmark_upsnet.py --parts fusion --repeats 5
    python tools/analysis_tools/benchmark_upsnet.py --sizes 256x192

Random-initialised weights: the RoI score threshold is set to 0 so every image
carries the full 100 detections into the panoptic stage (the worst case).
"""
import argparse
import contextlib
import importlib.util
import os.path as osp
import statistics
import time
from collections import defaultdict

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

UPSNET_COCO = 'configs/upsnet/upsnet_r50_fpn_1x_coco.py'
PFPN_COCO = 'configs/panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--parts', nargs='+',
                   default=['dense', 'models', 'dcn', 'fusion'],
                   choices=['dense', 'models', 'dcn', 'fusion'])
    p.add_argument('--sizes', nargs='+', default=['1216x800', '256x192'],
                   help='WxH image sizes for the whole-model part')
    p.add_argument('--dense-sizes', nargs='+', default=['640x480', '1216x800'],
                   help='WxH image sizes for the dense part')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--no-whole', action='store_true',
                   help='dense part: skip the whole-model timings')
    p.add_argument('--no-train', action='store_true',
                   help='skip the train-step timing of the whole models')
    p.add_argument('--threads', type=int, default=None,
                   help='torch threads (default: torch default)')
    args = p.parse_args(argv)
    for s in args.sizes + args.dense_sizes:
        parts = s.split('x')
        if len(parts) != 2 or not all(v.isdigit() for v in parts):
            p.error(f'--sizes: expected WxH like 1216x800, got {s!r}')
    return args


def median(xs):
    return statistics.median(xs) if xs else float('nan')


@contextlib.contextmanager
def timed_methods(obj_methods, totals):
    """Accumulate the wall time of ``(obj, method_name, label)`` calls."""
    saved = []
    for obj, name, label in obj_methods:
        orig = getattr(obj, name)

        def wrapper(*a, __orig=orig, __label=label, **kw):
            t = time.perf_counter()
            out = __orig(*a, **kw)
            totals[__label] += time.perf_counter() - t
            return out

        setattr(obj, name, wrapper)
        saved.append((obj, name))
    try:
        yield totals
    finally:
        for obj, name in saved:
            delattr(obj, name)  # back to the class's method


# ---------------------------------------------------------------------------
# 1. whole models
# ---------------------------------------------------------------------------
def build_model(config, plain_semantic_convs=False):
    """A random-weight model; ``plain_semantic_convs``: the semantic head's
    ``conv_cfg=None`` twin (UPSNet's deformable layers as plain convs)."""
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS
    # the current logger: no per-parameter report from init_weights
    MMLogger.get_instance('benchmark_upsnet', log_level='WARNING')
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.init_cfg = None
    if plain_semantic_convs:
        cfg.model.semantic_head.conv_cfg = None
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # keep all 100 detections
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval()


def fake_batch(size, num_classes, num_things, num_gt=10, seed=0):
    """One image of ``size`` (W, H) with ``num_gt`` box-shaped instances."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData, PixelData
    w, h = size
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(1, 3, h, w, generator=g) * 255
    xy = torch.rand(num_gt, 2, generator=g) * torch.tensor([w * .7, h * .7])
    wh = (torch.rand(num_gt, 2, generator=g) * .25 + .05) * torch.tensor(
        [w, h])
    boxes = torch.cat([xy, xy + wh], 1)
    labels = torch.randint(0, num_things, (num_gt, ), generator=g)
    masks = torch.zeros(num_gt, h, w, dtype=torch.uint8)
    sem = torch.randint(num_things, num_classes, (1, h, w), generator=g)
    for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
        masks[i, y0:y1, x0:x1] = 1
        sem[0, y0:y1, x0:x1] = labels[i]
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                batch_input_shape=(h, w), scale_factor=(1., 1.), img_id=0)
    sample = DetDataSample(metainfo=meta)
    sample.gt_instances = InstanceData(
        bboxes=boxes, labels=labels, masks=BitmapMasks(masks.numpy(), h, w))
    sample.gt_sem_seg = PixelData(sem_seg=sem)
    return img, [sample]


def model_parts(model):
    parts = [(model, 'extract_feat', 'features'),
             (model.rpn_head, 'predict', 'rpn'),
             (model.semantic_head, 'predict', 'semantic head'),
             (model.panoptic_fusion_head, 'predict', 'panoptic fusion')]
    if hasattr(model.roi_head, 'predict_bbox') and type(model).__name__ == \
            'UPSNet':
        parts += [(model.roi_head, 'predict_bbox', 'roi heads'),
                  (model, '_add_mask_logits', 'roi heads')]
    else:
        parts += [(model.roi_head, 'predict', 'roi heads')]
    return parts


def train_step(loss_fn, img, samples, model):
    """``loss_fn(img, samples)``, the sum of its losses, backward; ``model``
    in train mode meanwhile, gradients dropped afterwards."""
    model.train()
    try:
        losses = loss_fn(img, samples)
        loss = sum(v.sum() for k, v in losses.items()
                   if 'loss' in k and isinstance(v, torch.Tensor))
        loss.backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def time_fn(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_models(args):
    models = {'panoptic_fpn': build_model(PFPN_COCO),
              'upsnet': build_model(UPSNET_COCO)}
    num_classes = 133
    print('\n== 1. whole models (R50-FPN, 133 classes, 1 image, '
          f'{torch.get_num_threads()} threads)')
    for size_s in args.sizes:
        size = tuple(int(v) for v in size_s.split('x'))
        img, samples = fake_batch(size, num_classes, 80)
        infer = defaultdict(list)
        parts = {n: defaultdict(list) for n in models}
        train = defaultdict(list)
        for r in range(args.repeats + 1):  # the first round is warm-up
            for name, model in models.items():
                totals = defaultdict(float)
                with torch.no_grad(), timed_methods(model_parts(model),
                                                    totals):
                    t = time.perf_counter()
                    model.predict(img, samples, rescale=True)
                    dt = time.perf_counter() - t
                if r:
                    infer[name].append(dt)
                    for k, v in totals.items():
                        parts[name][k].append(v)
                if args.no_train:
                    continue
                dt = time_fn(lambda: train_step(model.loss, img, samples,
                                                model))
                if r:
                    train[name].append(dt)
        print(f'\n-- {size[0]}x{size[1]}: inference (s, median of '
              f'{args.repeats})')
        labels = ['features', 'rpn', 'roi heads', 'semantic head',
                  'panoptic fusion']
        print(f"{'part':<18}" + ''.join(f'{n:>15}' for n in models) +
              f"{'ratio':>9}")
        for label in labels + ['TOTAL']:
            vals = [median(infer[n]) if label == 'TOTAL' else
                    median(parts[n][label]) for n in models]
            print(f'{label:<18}' + ''.join(f'{v:>15.3f}' for v in vals) +
                  f'{vals[1] / vals[0]:>9.2f}')
        if not args.no_train:
            vals = [median(train[n]) for n in models]
            print(f"{'train step':<18}" + ''.join(f'{v:>15.3f}' for v in vals)
                  + f'{vals[1] / vals[0]:>9.2f}')


# ---------------------------------------------------------------------------
# 0. dense part: FLOPs, time ratios, efficiency
# ---------------------------------------------------------------------------
class DensePart(torch.nn.Module):
    """Backbone + FPN + semantic head of a panoptic detector.

    What differs between UPSNet and Panoptic FPN apart from the panoptic
    fusion (their RPN and RoI heads are the same). ``forward`` gives the
    1/4-scale semantic logits; ``loss`` the semantic head's losses (UPSNet:
    the full-resolution ``loss_seg`` and the RoI ``loss_roi_seg``).
    """

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, img):
        feats = self.detector.extract_feat(img)
        return self.detector.semantic_head(feats)['seg_preds']

    def loss(self, img, samples):
        return self.detector.semantic_head.loss(
            self.detector.extract_feat(img), samples)


def dense_gmacs(model, img):
    """Forward GMACs of the dense part by mmengine's ``FlopAnalyzer`` (it
    counts a multiply-add as one flop)."""
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(DensePart(model), (img, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        return analyzer.total() / 1e9


def dense_train_gmacs(model, img, samples):
    """GMACs of the dense part's training step (forward + backward, the
    semantic losses included), by torch's ``FlopCounterMode`` on what
    autograd runs: a conv's or matrix product's backward counts the weight
    gradient only where the weight trains and the input gradient only where
    the input needs one, so ResNet's frozen stem and stage 1 count their
    forward only (mmengine's counter sees the forward alone). Two flops are
    one multiply-add, as in :func:`dense_gmacs`."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(DensePart(model).loss, img, samples, model)
    return counter.get_total_flops() / 2e9


def dense_steps(models, img, samples, whole=True):
    """:func:`benchmark_deform_conv.measure` steps, one per model and pass:
    the dense part's ``fwd`` and ``fwd+bwd``, and with ``whole`` the whole
    model's ``inference`` and ``train step``."""
    steps = {}
    for name, model in models.items():
        dense = DensePart(model)

        def fwd(dense=dense):
            with torch.no_grad():
                return dict(s=time_fn(lambda: dense(img)))

        steps[name, 'dense', 'fwd'] = fwd
        steps[name, 'dense', 'fwd+bwd'] = lambda dense=dense, model=model: \
            dict(s=time_fn(lambda: train_step(dense.loss, img, samples,
                                              model)))
        if not whole:
            continue

        def infer(model=model):
            with torch.no_grad():
                return dict(s=time_fn(
                    lambda: model.predict(img, samples, rescale=True)))

        steps[name, 'whole model', 'inference'] = infer
        steps[name, 'whole model', 'train step'] = \
            lambda model=model: dict(s=time_fn(lambda: train_step(
                model.loss, img, samples, model)))
    return steps


DENSE_HEADER = ('| image | part | pass | P-FPN GMACs | UPSNet GMACs | '
                'FLOP ratio | P-FPN s | UPSNet s | time ratio | '
                'efficiency | per-round efficiency | efficiency vs the '
                'forward FLOP ratio | plain-conv twin s | '
                'twin efficiency | runs |')


def round_ratios(res, num, den):
    """Time ratios ``num / den`` of the runs made in the same round.

    Every dense step runs once per round (no warm-up run is kept), so run i
    of one step and run i of another were measured seconds apart: their
    ratio is less exposed to the host's speed changing during the benchmark
    than the ratio of the medians.
    """
    return [a['s'] / b['s'] for a, b in zip(res[num]['each'],
                                            res[den]['each'])]


def bench_dense(args):
    dcn_bench = _dcn_benchmark_module()
    models = {'panoptic_fpn': build_model(PFPN_COCO),
              'upsnet': build_model(UPSNET_COCO)}
    twin = build_model(UPSNET_COCO, plain_semantic_convs=True)
    print('\n== 0. dense part (backbone + FPN + semantic head), R50-FPN, '
          f'133 classes, 1 image, {torch.get_num_threads()} threads; '
          f'medians of {args.repeats} interleaved runs; GMACs (UPSNet: '
          'its conv_cfg=None twin) of the pass: fwd by mmengine\'s '
          'FlopAnalyzer, fwd+bwd by torch\'s FlopCounterMode on the '
          'training step (the backward autograd runs); efficiency = time '
          'ratio / FLOP ratio of the pass (target <= 1.15); per-round '
          'efficiency: median (min-max) over the rounds of the ratio of '
          'the runs made in the same round; also the time ratio / the '
          'forward FLOP ratio\n')
    print(DENSE_HEADER)
    print('|' + '|'.join(['---'] * (DENSE_HEADER.count('|') - 1)) + '|')
    for size_s in args.dense_sizes:
        size = tuple(int(v) for v in size_s.split('x'))
        img, samples = fake_batch(size, 133, 80)
        pair = (models['panoptic_fpn'], twin)
        gmacs = {'fwd': [dense_gmacs(m, img) for m in pair],
                 'fwd+bwd': [dense_train_gmacs(m, img, samples)
                             for m in pair]}
        fwd_flop_ratio = gmacs['fwd'][1] / gmacs['fwd'][0]
        steps = dense_steps(models, img, samples, not args.no_whole)
        # the twin's dense part too: what UPSNet would take if its
        # deformable layers cost what plain convs do
        steps.update(dense_steps({'twin': twin}, img, samples, whole=False))
        res = dcn_bench.measure(steps, args.repeats,
                                max_seconds=float("inf"),
                                warmup_below=float("inf"))
        for _, part, kind in [k for k in res if k[0] == 'upsnet']:
            t_pf, t_up = (res[n, part, kind]['s'] for n in models)
            time_ratio = t_up / t_pf
            dense = part == 'dense'
            flops, eff, eff_fwd, spread = '- | - | -', '-', '-', '-'
            if dense:
                pf_gmacs, up_gmacs = gmacs[kind]
                flop_ratio = up_gmacs / pf_gmacs
                flops = f'{pf_gmacs:.1f} | {up_gmacs:.1f} | {flop_ratio:.3f}'
                eff = f'**{time_ratio / flop_ratio:.2f}**'
                eff_fwd = f'{time_ratio / fwd_flop_ratio:.2f}'
                per_round = sorted(
                    r / flop_ratio for r in round_ratios(
                        res, ('upsnet', part, kind),
                        ('panoptic_fpn', part, kind)))
                spread = (f'{statistics.median(per_round):.2f} '
                          f'({per_round[0]:.2f}–{per_round[-1]:.2f})')
            names = list(models) + (['twin'] if dense else [])
            runs = '/'.join(str(res[n, part, kind]['runs']) for n in names)
            twin_cols = '- | -'
            if dense:
                t_tw = res['twin', part, kind]['s']
                twin_cols = f'{t_tw:.3f} | {t_tw / t_pf / flop_ratio:.2f}'
            print(f'| {size_s} | {part} | {kind} | {flops} | {t_pf:.3f} | '
                  f'{t_up:.3f} | {time_ratio:.3f} | {eff} | {spread} | '
                  f'{eff_fwd} | {twin_cols} | '
                  f'{runs} |',
                  flush=True)


def _dcn_benchmark_module():
    path = osp.join(ROOT, 'tools', 'analysis_tools',
                    'benchmark_deform_conv.py')
    spec = importlib.util.spec_from_file_location('benchmark_deform_conv',
                                                  path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------
# 2. deformable convolution (segext CPU path vs mmcv CPU kernel)
# ---------------------------------------------------------------------------
def bench_dcn(args):
    mod = _dcn_benchmark_module()
    print('\n== 2. deformable convolution, segext vs mmcv (CPU)')
    mod.main(['--repeats', str(args.repeats)])


# ---------------------------------------------------------------------------
# 3. panoptic fusion alone
# ---------------------------------------------------------------------------
def fusion_inputs(n, size=(1216, 800), num_things=80, num_stuff=53, seed=0):
    from mmengine.structures import InstanceData
    w, h = size
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * .8, h * .8])
    wh = (torch.rand(n, 2, generator=g) * .2 + .02) * torch.tensor([w, h])
    boxes = torch.cat([xy, xy + wh], 1)
    labels = torch.randint(0, num_things, (n, ), generator=g)
    scores = torch.rand(n, generator=g).sort(descending=True).values * .4 + .6
    mask_logits = torch.randn(n, 28, 28, generator=g)
    upsnet_det = InstanceData(bboxes=boxes, labels=labels, scores=scores,
                              mask_logits=mask_logits)
    sem_logits = torch.randn(num_things + num_stuff, h, w, generator=g)
    # Panoptic FPN: binary masks pasted from 28x28 sigmoid masks; semantic
    # logits over stuff + one "thing" class
    pfpn_sem = torch.randn(num_stuff + 1, h, w, generator=g)
    return upsnet_det, sem_logits, pfpn_sem


def paste_binary(mask_logits, boxes, size):
    """What Panoptic FPN's mask head does before fusion (mmdet's pasting)."""
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import \
        _do_paste_mask
    w, h = size
    masks, _ = _do_paste_mask(mask_logits[:, None].sigmoid(), boxes, h, w,
                              skip_empty=False)
    return masks >= 0.5


def bench_fusion(args):
    from mmdet.models.seg_heads.panoptic_fusion_heads import \
        HeuristicFusionHead
    from mmengine.config import ConfigDict
    from mmengine.structures import InstanceData

    from segext.models.panoptic_fusion_heads import UPSNetPanopticHead
    size = (1216, 800)
    test_cfg = ConfigDict(mask_overlap=0.5, stuff_area_limit=4096)
    heuristic = HeuristicFusionHead(num_things_classes=80,
                                    num_stuff_classes=53, test_cfg=test_cfg)
    from mmengine.config import Config
    ups_cfg = Config.fromfile(osp.join(ROOT, UPSNET_COCO))
    ups_kwargs = dict(ups_cfg.model.panoptic_fusion_head)
    ups_kwargs.pop('type')
    ups_kwargs.pop('loss_panoptic', None)
    upsnet = UPSNetPanopticHead(
        test_cfg=ups_cfg.model.test_cfg.get('panoptic'), **ups_kwargs).eval()
    print(f'\n== 3. panoptic fusion alone ({size[0]}x{size[1]}, 133 '
          f'classes; s, median of {args.repeats})')
    print(f"{'instances':>9}{'heuristic':>12}{'paste+heur.':>13}"
          f"{'upsnet head':>13}{'ups/heur':>10}{'ups/(paste+heur)':>18}")
    for n in (10, 50, 100):
        det, sem, pfpn_sem = fusion_inputs(n, size)
        times = defaultdict(list)
        for r in range(args.repeats + 1):
            with torch.no_grad():
                t = time.perf_counter()
                masks = paste_binary(det.mask_logits, det.bboxes, size)
                t_paste = time.perf_counter() - t
                res = InstanceData(bboxes=det.bboxes, labels=det.labels,
                                   scores=det.scores, masks=masks)
                t = time.perf_counter()
                heuristic.predict([res], [pfpn_sem])
                t_heur = time.perf_counter() - t
                t = time.perf_counter()
                upsnet.predict([det], [sem])
                t_ups = time.perf_counter() - t
            if r:
                times['heur'].append(t_heur)
                times['paste'].append(t_paste + t_heur)
                times['ups'].append(t_ups)
        h, p, u = (median(times[k]) for k in ('heur', 'paste', 'ups'))
        print(f'{n:>9}{h:>12.3f}{p:>13.3f}{u:>13.3f}{u / h:>10.2f}'
              f'{u / p:>18.2f}')


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import segext  # noqa: F401
    if 'dense' in args.parts:
        bench_dense(args)
    if 'fusion' in args.parts:
        bench_fusion(args)
    if 'dcn' in args.parts:
        bench_dcn(args)
    if 'models' in args.parts:
        bench_models(args)


if __name__ == '__main__':
    main()
