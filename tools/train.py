"""Train a segext / mmdet / mmseg model from a config.

Same arguments as mmdet's and mmseg's ``tools/train.py``; ONE script serves
both, choosing the host library from the config's ``default_scope``.

    python tools/train.py configs/upsnet_coco.py
    python tools/train.py CONFIG --work-dir work_dirs/x --resume      # auto
    python tools/train.py CONFIG --resume work_dirs/x/iter_800.pth
    bash tools/dist_train.sh CONFIG 8                                 # torchrun
"""
import argparse
from urllib.error import URLError

from mmengine.config import DictAction  # noqa: E402

import segext  # noqa: E402,F401  (registers modules)
from segext.engine import NonFiniteTrainingError  # noqa: E402
from segext.engine.dist import destroy_cpu_process_group  # noqa: E402
from segext.utils.cli import build_runner, user_errors_to_exit  # noqa: E402
from segext.utils.config_check import check_training_config  # noqa: E402
from segext.utils.config import (UserInputError, apply_common_overrides,  # noqa: E402
                                 check_resume, check_work_dir, host_scope,
                                 load_config, set_env_local_rank)
from segext.utils.workdir import (WorkDirLock, launcher_rank,  # noqa: E402
                                  move_earlier_run_aside)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a model (mmdet- or mmseg-scoped config)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true', default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the LR by (total batch size / auto_scale_lr.base_batch_'
        'size)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or, with no value, from the '
        'latest checkpoint in the work dir (starting fresh if there is none)')
    parser.add_argument(
        '--overwrite', action='store_true',
        help='allow a fresh run in a work dir that holds checkpoints of an '
        'earlier run (they are moved into WORK_DIR/overwritten_<time>/)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (e.g. '
        'train_dataloader.batch_size=4 "model.backbone.depth=50")')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    set_env_local_rank(args.local_rank)
    return args


def prepare_cfg(args):
    cfg = load_config(args.config, args.cfg_options)
    scope = host_scope(cfg, args.config)
    apply_common_overrides(cfg, args, args.config)
    # safe loading, robust auto-resume, CPU DDP (docs/checkpoints.md)
    cfg.setdefault('runner_type', 'SegextRunner')

    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print('AMP training is already enabled in your config.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        asl = cfg.get('auto_scale_lr', None)
        if not asl or 'base_batch_size' not in asl:
            raise UserInputError(
                f'{args.config}: --auto-scale-lr needs auto_scale_lr = dict('
                f'enable=..., base_batch_size=N) in the config')
        cfg.auto_scale_lr.enable = True
    check_resume(cfg, args.resume)
    if args.resume is not None and args.overwrite:
        raise UserInputError(
            '--resume continues the run in the work dir and --overwrite '
            'starts a new one: pass only one of them')
    check_training_config(cfg, scope)
    return cfg, scope


def hold_work_dir(cfg, args):
    """One run per work dir: the launcher's rank 0 locks it for the whole
    run (the other ranks belong to the same run), then the earlier run's
    checkpoints are refused, or moved aside with ``--overwrite``."""
    lock = None
    if launcher_rank(args.launcher) == 0:
        lock = WorkDirLock(cfg.work_dir).acquire()
    check_work_dir(cfg, args.resume, args.overwrite)
    if lock is not None and args.overwrite:
        moved = move_earlier_run_aside(cfg.work_dir)
        if moved:
            folder, names = moved
            shown = ', '.join(names[:4]) + (' ...' if len(names) > 4 else '')
            print(f'train: --overwrite: moved the earlier run\'s {shown} '
                  f'to {folder}/ (a later --resume starts from this run)',
                  flush=True)
    return lock


def main(argv=None):
    args = parse_args(argv)
    with user_errors_to_exit('train', args.config,
                             cfg_options=args.cfg_options):
        cfg, scope = prepare_cfg(args)
        lock = hold_work_dir(cfg, args)  # noqa: F841  held until exit
        if scope == 'mmdet':
            from mmdet.utils import setup_cache_size_limit_of_dynamo
            setup_cache_size_limit_of_dynamo()
        runner = build_runner(cfg)
    # Only a missing file (data root, checkpoint) or an unreachable weights
    # URL (init_cfg=Pretrained) is reported briefly once training started;
    # anything else keeps its traceback.  A NaN/inf loss or weights stop the
    # run the same way (NonFiniteCheckHook), before anything is saved.
    with user_errors_to_exit('train', 'while training', only=(
            FileNotFoundError, UserInputError, URLError,
            NonFiniteTrainingError)):
        runner.train()
    # a finished multi-process CPU run: close gloo before the interpreter
    # exits (it can abort the process otherwise, see the function); the
    # runner's DDP wrapper holds the group, so it goes first
    del runner
    destroy_cpu_process_group()


if __name__ == '__main__':
    main()
