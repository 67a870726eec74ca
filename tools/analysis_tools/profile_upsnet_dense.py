"""Where the dense part's time goes: UPSNet vs Panoptic FPN, per component.

``torch.profiler`` on training steps (forward + backward, the semantic head's
losses included; ``--pass fwd``: inference forwards) of the dense part --
backbone + FPN + semantic head, see ``benchmark_upsnet.py --parts dense`` --
of the R50-FPN COCO configs on one random image. The top-level operations of
each step are sorted into components (the forward and the backward of each,
by the op's name and, for convolutions, the weight's shape):

* deformable conv (segext's CPU op ``DeformConv2dCPUFunction``) fwd / bwd,
* offset convs (the 3x3 convs predicting the offsets, 2*dg*kh*kw outputs),
* the other convolutions (backbone, FPN, head; both models),
* UPSNet's 1x1 classifier, applied per FPN level (matrix products),
* bilinear upsampling of features (Panoptic FPN: P3-P5 to P2) / of logits
  (UPSNet's per-level logits), UPSNet's full-resolution ``L_sem`` (one
  kernel: upsampling + CE), concatenation, cross-entropy, RoIAlign,
* the rest (norms, ReLU, pooling, copies, adds).

The models take turns; each cell is the median over ``--repeats`` profiled
steps (after one unprofiled warm-up step per model). Seconds of wall time on
the calling thread (an op's worker threads run inside its span).

    python tools/analysis_tools/profile_upsnet_dense.py --size 640x480
    python tools/analysis_tools/profile_upsnet_dense.py --threads 1 \\
        --size 1216x800 --repeats 3
    python tools/analysis_tools/profile_upsnet_dense.py --twin --pass fwd
"""
import argparse
import os.path as osp
import statistics
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile, record_function

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

COMPONENTS = ('deformable conv fwd', 'deformable conv bwd', 'offset convs',
              'offset convs (training: GEMM weight grad)', 'other convs',
              'classifier (per level)', 'feature upsampling',
              'logit upsampling', 'L_sem (upsampling + CE)', 'concatenation',
              'cross-entropy', 'RoIAlign', 'rest')


def _descendant(event, name):
    """The first event below ``event`` whose name contains ``name``."""
    stack = list(event.cpu_children)
    while stack:
        child = stack.pop(0)
        if name in child.name:
            return child
        stack.extend(child.cpu_children)
    return None


def component(event, offset_shapes, num_classes):
    """The component a top-level profiler event belongs to."""
    name = event.name
    if 'DeformConv2dCPUFunction' in name:
        return 'deformable conv ' + ('bwd' if 'Backward' in name else 'fwd')
    if 'ChannelsLastConv2d' in name:  # segext.ops.conv_cl_cpu, training
        return 'offset convs (training: GEMM weight grad)'
    if 'UpsampledNLL' in name:
        return 'L_sem (upsampling + CE)'
    if 'RoIAlign' in name:
        return 'RoIAlign'
    if name == 'aten::conv2d' or 'ConvolutionBackward' in name:
        op = event if name == 'aten::conv2d' else _descendant(
            event, 'aten::convolution_backward')
        weight = (op.input_shapes[1] if name == 'aten::conv2d' else
                  op.input_shapes[2]) if op is not None and op.input_shapes \
            else None
        return 'offset convs' if weight and tuple(weight) in offset_shapes \
            else 'other convs'
    if 'upsample_bilinear2d' in name.lower() or \
            'UpsampleBilinear2DBackward' in name:
        op = event if 'aten::' in name else _descendant(
            event, 'upsample_bilinear2d_backward')
        shape = op.input_shapes[0] if op is not None and op.input_shapes \
            else None
        return 'logit upsampling' if shape and len(shape) == 4 and \
            shape[1] == num_classes else 'feature upsampling'
    if name == 'aten::matmul' or 'BmmBackward' in name or \
            'MmBackward' in name:  # UPSNet's classifier, per FPN level
        return 'classifier (per level)'
    if name == 'aten::cat' or 'CatBackward' in name:
        return 'concatenation'
    if any(k in name for k in ('cross_entropy', 'log_softmax', 'nll_loss',
                               'LogSoftmaxBackward', 'NllLoss')):
        return 'cross-entropy'
    return 'rest'


def profile_step(step, offset_shapes, num_classes):
    """Seconds per component (and 'total') of one call of ``step``."""
    with profile(activities=[ProfilerActivity.CPU],
                 record_shapes=True) as prof:
        with record_function('dense step'):
            step()
    events = prof.events()
    root = max((e for e in events if e.name == 'dense step'),
               key=lambda e: e.cpu_time_total)
    times = defaultdict(float)
    for event in root.cpu_children:
        times[component(event, offset_shapes, num_classes)] += \
            event.cpu_time_total / 1e6
    times['total'] = root.cpu_time_total / 1e6
    return times


def _inference(dense, img):
    with torch.no_grad():
        dense(img)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', default='640x480', help='WxH image size')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--threads', type=int, default=None,
                   help='torch threads (default: torch default)')
    p.add_argument('--pass', dest='kind', choices=('fwd+bwd', 'fwd'),
                   default='fwd+bwd',
                   help='training steps (default) or inference forwards')
    p.add_argument('--twin', action='store_true',
                   help="also UPSNet's conv_cfg=None twin (plain convs in "
                   'the semantic head: what the FLOP ratio counts)')
    args = p.parse_args(argv)
    parts = args.size.split('x')
    if len(parts) != 2 or not all(v.isdigit() for v in parts):
        p.error(f'--size: expected WxH like 640x480, got {args.size!r}')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import segext  # noqa: F401
    from segext.models.layers import DeformConv2dWithOffset
    import benchmark_upsnet as bench  # next to this script
    models = {'Panoptic FPN': bench.build_model(bench.PFPN_COCO)}
    if args.twin:
        models['twin'] = bench.build_model(bench.UPSNET_COCO,
                                           plain_semantic_convs=True)
    models['UPSNet'] = bench.build_model(bench.UPSNET_COCO)
    offset_shapes = {
        tuple(m.conv_offset.weight.shape)
        for m in models['UPSNet'].modules()
        if isinstance(m, DeformConv2dWithOffset)
    }
    size = tuple(int(v) for v in args.size.split('x'))
    img, samples = bench.fake_batch(size, 133, 80)
    steps = {}
    for name, model in models.items():
        dense = bench.DensePart(model)
        if args.kind == 'fwd':
            steps[name] = lambda dense=dense: _inference(dense, img)
        else:
            steps[name] = lambda dense=dense, model=model: bench.train_step(
                dense.loss, img, samples, model)
    runs = {name: [] for name in steps}
    for name, step in steps.items():
        step()  # warm-up
    for _ in range(args.repeats):
        for name, step in steps.items():
            runs[name].append(profile_step(step, offset_shapes, 133))
    what = 'inference forward' if args.kind == 'fwd' else \
        'fwd+bwd (with the semantic head\'s losses)'
    print(f'dense part (backbone + FPN + semantic head) {what}, '
          f'{args.size}, {torch.get_num_threads()} threads; seconds, '
          f'median of {args.repeats} profiled steps\n')
    names = list(steps)
    diffs = names[:-1]  # UPSNet minus each of the others
    print('| component | ' + ' | '.join(names) + ' | ' +
          ' | '.join(f'UPSNet - {n}' for n in diffs) + ' |')
    print('|---|' + '---:|' * (len(names) + len(diffs)))
    for comp in COMPONENTS + ('total', ):
        vals = dict((n, statistics.median(r[comp] for r in runs[n]))
                    for n in names)
        if comp != 'total' and not any(vals.values()):
            continue
        label = f'**{comp}**' if comp == 'total' else comp
        print(f'| {label} | ' + ' | '.join(f'{vals[n]:.3f}' for n in names) +
              ' | ' + ' | '.join(f'{vals["UPSNet"] - vals[n]:+.3f}'
                                 for n in diffs) + ' |')

if __name__ == '__main__':
    main()
