"""FLOPs and parameters of mmdet- and mmseg-scoped configs, one table row each.

    python tools/analysis_tools/get_flops.py CONFIG [CONFIG ...] [--shape H W]
        [--cfg-options k=v ...]

Like mmdet's and mmseg's own ``get_flops.py``: the model is built from the
config (the scope comes from its ``default_scope``), put in eval mode, and
mmengine's ``FlopAnalyzer`` (what
:func:`~mmengine.analysis.get_model_complexity_info` runs) traces its
``mode='tensor'`` forward (``torch.jit.trace``) on one random image of
``--shape`` (default: the ``scale`` of the config's test-pipeline ``Resize``,
else 512×512), after the model's data preprocessor (so padded as in testing).
No dataset is read. mmdet's tool needs the validation data; mmseg's tool
builds the same random batch.

FLOPs are fvcore's convention (one fused multiply-add = one FLOP) and cover
the ops mmengine has handles for (convs, linear layers, matmuls, norms,
upsampling); segext's deformable convs run as mmcv's op while traced
(:mod:`segext.models.layers.deform_conv`), which this tool counts as the
convolution it generalises (:func:`deform_conv_flops`; the bilinear sampling
is not counted).
RoI-based heads are traced on the proposals of the random image, so their
share depends on how many survive (mmdet's tool has the same caveat).
"""
import argparse
import math
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.config import DictAction

import segext  # noqa: F401  registers segext's modules
from segext.utils.cli import user_errors_to_exit
from segext.utils.config import UserInputError, host_scope, load_config

DEFAULT_SHAPE = (512, 512)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='FLOPs and parameters of mmdet/mmseg configs')
    parser.add_argument('configs', nargs='+', help='config file(s)')
    parser.add_argument(
        '--shape', type=int, nargs='+', default=None,
        help='input size H W (or one number for a square); default: the '
        "test pipeline's Resize scale, else 512x512")
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings of every config, key=value')
    return parser.parse_args(argv)


def _pipeline_shape(cfg) -> Optional[Tuple[int, int]]:
    """(H, W) of the test pipeline's ``Resize`` (its ``scale`` is (W, H))."""
    pipeline = cfg.get('test_pipeline', None) or []
    for step in pipeline:
        scale = step.get('scale', None) if step.get('type') == 'Resize' \
            else None
        if isinstance(scale, (tuple, list)) and len(scale) == 2:
            return int(scale[1]), int(scale[0])
        if isinstance(scale, int):
            return scale, scale
    return None


def input_shape(cfg, shape: Optional[Sequence[int]]) -> Tuple[int, int]:
    if shape is None:
        return _pipeline_shape(cfg) or DEFAULT_SHAPE
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return tuple(shape)
    raise UserInputError(f'--shape takes H W or one size, got {shape}')


def _data_sample(scope: str, shape: Tuple[int, int]):
    meta = dict(ori_shape=shape, img_shape=shape, pad_shape=shape,
                scale_factor=(1.0, 1.0))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        return DetDataSample(metainfo=meta)
    from mmseg.structures import SegDataSample
    return SegDataSample(metainfo=meta)


def deform_conv_flops(inputs: list, outputs: list) -> int:
    """FLOPs of mmcv's ``DeformConv2dFunction`` node: those of the plain
    conv with the same weight, ``prod(out) * prod(weight[1:])``, on the
    shapes mmcv runs (a map smaller than the kernel is padded to it)."""
    from mmengine.analysis.jit_handles import get_shape
    out_shape, weight_shape = get_shape(outputs[0]), get_shape(inputs[2])
    return math.prod(out_shape) * math.prod(weight_shape[1:])


#: traced node -> FLOP handle, for ops mmengine does not know
EXTRA_HANDLES = {'prim::PythonOp.DeformConv2dFunction': deform_conv_flops}


def complexity(cfg, scope: str, shape: Tuple[int, int]) -> dict:
    """Build ``cfg.model`` and count FLOPs/params on one random image."""
    from functools import partial

    from mmengine.analysis import FlopAnalyzer, parameter_count
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope

    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    torch.manual_seed(0)  # the same weights, so the same proposals, each run
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
    model = revert_sync_batchnorm(model)
    if getattr(model, 'auxiliary_head', None) is not None:
        model.auxiliary_head = None  # training only, as mmseg's tool
    model.eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, *shape), dtype=torch.uint8,
                          generator=generator)
    data = model.data_preprocessor(
        dict(inputs=[image], data_samples=[_data_sample(scope, shape)]))
    forward = partial(model.forward, data_samples=data['data_samples'],
                      mode='tensor')
    analyzer = FlopAnalyzer(_Forward(model, forward), (data['inputs'], ))
    analyzer.set_op_handle(**EXTRA_HANDLES)
    # ops without a handle (elementwise, pooling, NMS, RoIAlign) count as 0,
    # mmengine's and fvcore's convention; one warning line each is noise
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        flops = analyzer.total()
    return dict(flops=flops, params=parameter_count(model)[''],
                shape=tuple(data['inputs'].shape[-2:]))


class _Forward(torch.nn.Module):
    """``model`` whose ``forward`` is the ``mode='tensor'`` call (so the
    model's own ``forward`` is left untouched)."""

    def __init__(self, model: torch.nn.Module, forward) -> None:
        super().__init__()
        self.model = model
        self._call = forward

    def forward(self, inputs):
        return self._call(inputs)


def _format(count: float) -> str:
    from mmengine.analysis.print_helper import _format_size
    return _format_size(int(count))


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    rows = []
    for path in args.configs:
        with user_errors_to_exit('get_flops', f'config {path}',
                                 cfg_options=args.cfg_options):
            cfg = load_config(path, args.cfg_options)
            scope = host_scope(cfg, path)
            shape = input_shape(cfg, args.shape)
        result = complexity(cfg, scope, shape)
        rows.append((osp.relpath(path), scope,
                     '{}x{}'.format(*result['shape']),
                     _format(result['flops']), _format(result['params'])))
        print(f'{rows[-1][0]}: {rows[-1][3]} FLOPs, {rows[-1][4]} params '
              f'at {rows[-1][2]}', flush=True)
    header = ('config', 'scope', 'input (padded)', 'FLOPs', 'params')
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(5)]
    print()
    for row in [header, tuple('-' * w for w in widths)] + rows:
        print('| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths)) +
              ' |')


if __name__ == '__main__':
    main()
