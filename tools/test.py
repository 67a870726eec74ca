"""Test (and evaluate) a checkpoint; mmdet's and mmseg's arguments.

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl] [--show-dir DIR]
    bash tools/dist_test.sh CONFIG CHECKPOINT 8

``--show-dir DIR`` writes the painted predictions (panoptic / semantic
overlays) under ``WORK_DIR/TIMESTAMP/DIR`` as the upstream tools do.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction  # noqa: E402

import segext  # noqa: E402,F401
from segext.engine.dist import destroy_cpu_process_group  # noqa: E402
from segext.utils.cli import build_runner, user_errors_to_exit  # noqa: E402
from segext.utils.state_dict_check import check_state_dict  # noqa: E402
from segext.utils.config import (UserInputError, apply_common_overrides,  # noqa: E402
                                 check_checkpoint, host_scope, load_config,
                                 set_env_local_rank)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a model (mmdet- or mmseg-scoped)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument(
        '--out', type=str,
        help='mmdet: dump predictions to this .pkl file; mmseg: save the '
        'predicted label maps in this directory')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved (under '
        'work_dir/timestamp/)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation (tta_model/pipeline)')
    parser.add_argument(
        '--allow-partial-load', action='store_true',
        help='evaluate even if the checkpoint misses keys of the model, has '
        'others or other shapes (by default that is an error: it is most '
        'likely a checkpoint of another config)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    set_env_local_rank(args.local_rank)
    return args


def enable_visualization(cfg, args, scope):
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise UserInputError(
            f'{args.config}: --show/--show-dir need default_hooks.'
            f'visualization (a {scope} VisualizationHook)')
    hook = hooks['visualization']
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if scope == 'mmdet':
            hook['test_out_dir'] = args.show_dir  # work_dir/<timestamp>/DIR
        else:
            # mmseg's hook draws every `interval`-th image (default 50) into
            # the visualizer's save_dir: paint them all, under the work dir.
            hook['interval'] = 1
            cfg.visualizer['save_dir'] = osp.join(cfg.work_dir, args.show_dir)
    return cfg


def enable_tta(cfg, args):
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise UserInputError(
            f'{args.config}: --tta needs tta_model and tta_pipeline in the '
            f'config')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model
    return cfg


def prepare_cfg(args):
    cfg = load_config(args.config, args.cfg_options)
    scope = host_scope(cfg, args.config)
    apply_common_overrides(cfg, args, args.config)
    # safe loading, robust auto-resume, CPU DDP (docs/checkpoints.md)
    cfg.setdefault('runner_type', 'SegextRunner')
    cfg.load_from = check_checkpoint(args.checkpoint)
    if args.show or args.show_dir:
        enable_visualization(cfg, args, scope)
    if args.tta:
        enable_tta(cfg, args)
    if args.out is not None and scope == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    if args.out is not None and scope == 'mmdet' and not args.out.endswith(
            ('.pkl', '.pickle')):
        raise UserInputError(f'--out {args.out}: must be a .pkl file')
    return cfg, scope


def read_state_dict(path):
    """The ``state_dict`` of a checkpoint, read as every segext load is:
    ``weights_only=True``, stock mmengine checkpoints through the exact,
    scoped allow-list of :mod:`segext.utils.checkpoint` (a refused file is
    one line naming it, the offending global and the opt-in)."""
    from segext.utils.checkpoint import load_checkpoint_file
    ckpt = load_checkpoint_file(path, map_location='cpu')
    return ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt


def check_checkpoint_fits(runner, args):
    """Refuse a checkpoint that is not one of this config's model (mmengine
    would load it non-strictly and report a wrong score)."""
    from mmengine.model import is_model_wrapper
    model = runner.model
    if is_model_wrapper(model) or args.tta:  # DDP / TTA wrap the model
        model = model.module
    mismatch = check_state_dict(
        read_state_dict(args.checkpoint), model.state_dict(), args.checkpoint,
        allow_partial=args.allow_partial_load)
    if mismatch:
        print(f'test: warning: --allow-partial-load: {mismatch.summary()}',
              file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    with user_errors_to_exit('test', args.config,
                             cfg_options=args.cfg_options):
        cfg, scope = prepare_cfg(args)
        if scope == 'mmdet':
            from mmdet.utils import setup_cache_size_limit_of_dynamo
            setup_cache_size_limit_of_dynamo()
        runner = build_runner(cfg)
        if args.out is not None and scope == 'mmdet':
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(
                DumpDetResults(out_file_path=args.out))
        check_checkpoint_fits(runner, args)
    with user_errors_to_exit('test', 'while testing', only=(
            FileNotFoundError, UserInputError)):
        runner.test()
    # a finished multi-process CPU run: close gloo before the interpreter
    # exits (it can abort the process otherwise, see the function); the
    # runner's DDP wrapper holds the group, so it goes first
    del runner
    destroy_cpu_process_group()


if __name__ == '__main__':
    main()
