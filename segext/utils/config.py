"""Config helpers shared by ``tools/train.py`` and ``tools/test.py``.

One pair of tools serves mmdet-scoped and mmseg-scoped configs: the host
library is read from the config's ``default_scope``.  Everything here turns a
user mistake into a :class:`UserInputError` whose message names the file, key
or value at fault; the tools print it without a traceback.
"""
from __future__ import annotations

import glob
import os
import os.path as osp

__all__ = [
    'UserInputError', 'HOST_SCOPES', 'load_config', 'host_scope',
    'apply_common_overrides', 'check_resume', 'check_work_dir',
    'check_checkpoint'
]

#: default_scope -> the host library that owns the runner-side pieces.
HOST_SCOPES = ('mmdet', 'mmseg')


class UserInputError(Exception):
    """A mistake in the user's command line or config (no traceback shown)."""


def load_config(path: str, cfg_options: dict | None = None):
    """``Config.fromfile`` + ``--cfg-options`` with errors that name the file.

    A top-level key one typo away from a Runner key, and ``--cfg-options``
    that would create a new top-level entry, are refused
    (:mod:`segext.utils.config_check`).

    Importing segext first means ``custom_imports`` and ``mmdet::``/``mmseg::``
    bases resolve exactly as with the upstream tools.
    """
    from mmengine.config import Config

    if not osp.isfile(path):
        raise UserInputError(f'config file not found: {path}')
    try:
        cfg = Config.fromfile(path)
    except (SyntaxError, NameError, ImportError, KeyError, TypeError,
            ValueError, FileNotFoundError, AttributeError) as err:
        raise UserInputError(
            f'cannot load config {path}: {type(err).__name__}: {err}') \
            from None
    from .config_check import check_cfg_options_keys, check_top_level_keys
    check_top_level_keys(cfg, path)
    if cfg_options:
        check_cfg_options_keys(cfg, cfg_options, path)
        try:
            cfg.merge_from_dict(cfg_options)
        except (KeyError, TypeError, ValueError) as err:
            raise UserInputError(
                f'--cfg-options {cfg_options!r} do not apply to {path}: '
                f'{err}') from None
    return cfg


def host_scope(cfg, path: str = '<config>') -> str:
    """The host library of a config: ``'mmdet'`` or ``'mmseg'``."""
    scope = cfg.get('default_scope', None)
    if scope not in HOST_SCOPES:
        raise UserInputError(
            f'{path}: default_scope must be one of {HOST_SCOPES} '
            f"(it decides mmdet's or mmseg's runner pieces), got {scope!r}")
    return scope


def apply_common_overrides(cfg, args, config_path: str):
    """``--launcher``, ``--work-dir`` and the default work dir, as upstream."""
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join(
            './work_dirs', osp.splitext(osp.basename(config_path))[0])
    return cfg


def check_checkpoint(path: str, what: str = 'checkpoint') -> str:
    if not osp.isfile(path):
        raise UserInputError(f'{what} file not found: {path}')
    return path


def _checkpoints_in(work_dir: str) -> list:
    return sorted(
        osp.basename(p) for p in glob.glob(osp.join(work_dir, '*.pth')))


def check_resume(cfg, resume):
    """Map ``--resume [CKPT]`` onto the config as mmdet's train.py does.

    ``--resume`` alone resumes from ``work_dir/last_checkpoint`` (mmengine's
    auto-resume) and starts fresh when the work dir holds no checkpoint yet.
    """
    if resume is None:
        return cfg
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    else:
        cfg.resume = True
        cfg.load_from = check_checkpoint(resume, '--resume checkpoint')
    return cfg


def check_work_dir(cfg, resume, overwrite: bool):
    """Refuse to silently overwrite an earlier run's checkpoints.

    Upstream tools start a fresh run in a work dir that already holds
    ``iter_*.pth``/``epoch_*.pth`` and overwrite them as training reaches the
    same iterations.  We stop and say what to do instead.
    """
    if resume is not None or overwrite:
        return
    found = _checkpoints_in(cfg.work_dir)
    if found:
        shown = ', '.join(found[:4]) + (' ...' if len(found) > 4 else '')
        raise UserInputError(
            f'work dir {cfg.work_dir} already holds checkpoints of an earlier '
            f'run ({shown}); pass --resume to continue it, --work-dir to '
            f'start elsewhere, or --overwrite to replace them')


def set_env_local_rank(local_rank: int):
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(local_rank)
