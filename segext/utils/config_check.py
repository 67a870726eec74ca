"""Checks of a loaded config that catch, before the Runner starts, the
mistakes upstream only reports deep inside training (or never).

Each check raises :class:`~segext.utils.config.UserInputError` with one line
naming the config key, the value found and what was expected:

- top-level keys: a near-miss of a Runner key (``trian_cfg``) is refused
  (:func:`check_top_level_keys`); ``--cfg-options`` that would create a new
  top-level entry are refused in :func:`check_cfg_options_keys`;
- ``train_cfg`` / ``val_cfg`` / ``test_cfg`` keys against the loop class's
  arguments (``max_iter`` for ``max_iters``);
- ``optim_wrapper.optimizer`` keys against the optimizer's arguments
  (``lrr``), and ``lr > 0``;
- ``batch_size >= 1`` of every dataloader;
- the class counts of the heads (and of :class:`CheckSegMap`) against the
  dataset's classes;
- the work dir: a directory that can be written.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import os
import os.path as osp
import tempfile

from .config import UserInputError

__all__ = [
    'RUNNER_KEYS', 'check_top_level_keys', 'check_cfg_options_keys',
    'check_loops', 'check_optimizer', 'check_batch_sizes',
    'check_num_classes', 'check_work_dir_writable', 'check_training_config'
]


def _runner_keys() -> tuple:
    from mmengine.runner import Runner
    params = inspect.signature(Runner.__init__).parameters
    return tuple(name for name in params if name not in ('self', 'cfg'))


#: The keys ``Runner.from_cfg`` reads, plus the ones the tools and
#: ``Config`` read themselves.
RUNNER_KEYS = _runner_keys() + (
    'custom_imports', 'runner_type', 'tta_model', 'tta_pipeline',
    'model_wrapper_cfg', 'find_unused_parameters', 'strategy', 'compile')


def _edit_distance_is_one(a: str, b: str) -> bool:
    """One substitution, insertion, deletion or swap of neighbours."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        return len(diff) == 1 or (
            len(diff) == 2 and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _closest(name: str, candidates) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f' (did you mean {match[0]!r}?)' if match else ''


def check_top_level_keys(cfg, path: str) -> None:
    """Refuse a top-level key one typo away from a Runner key.

    Configs define helper variables at top level (``data_root``,
    ``num_things_classes``, ``metainfo``, ...), so an unknown key alone is
    not an error; one edit (or a swap) away from a Runner key
    (``trian_cfg``, ``default_hook``) is.  A plural of a Runner key
    (``models``) is a helper name some stock configs use, and passes.
    """
    for key in cfg.keys():
        if key in RUNNER_KEYS or key.startswith('_'):
            continue
        for known in RUNNER_KEYS:
            if key != known + 's' and _edit_distance_is_one(key, known):
                raise UserInputError(
                    f'{path}: unknown top-level key {key!r} (did you mean '
                    f'{known!r}?); the Runner would silently ignore it')


def check_cfg_options_keys(cfg, cfg_options: dict, path: str) -> None:
    """``--cfg-options`` may only change existing top-level entries or set a
    Runner key the config leaves at its default (``randomness.seed=0``).

    A new top-level entry is ignored by everything (``trian_cfg.max_iters=2``
    would run the full schedule), so it is refused with the closest name.
    """
    for option, value in cfg_options.items():
        top = option.split('.', 1)[0]
        if top in cfg or top in RUNNER_KEYS:
            continue
        raise UserInputError(
            f'--cfg-options {option}={value}: {path} has no top-level key '
            f'{top!r}'
            f'{_closest(top, list(cfg.keys()) + list(RUNNER_KEYS))}; a new '
            f'top-level entry would be silently ignored')


def _registry(scope: str):
    return importlib.import_module(f'{scope}.registry')


def _resolve(registry, type_, what: str):
    if not isinstance(type_, str):
        return type_
    cls = registry.get(type_)
    if cls is None:
        raise UserInputError(f'{what}: {type_!r} is not a registered name')
    return cls


def _check_kwargs(cls, given: dict, key: str, passed_by_caller=()):
    """Every key of ``given`` is an argument of ``cls.__init__``."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n in params if n not in ('self', *passed_by_caller)]
    for name in given:
        if name not in accepted and not name.startswith('_'):  # _scope_
            raise UserInputError(
                f'{key}.{name}: {cls.__name__} has no argument {name!r}'
                f'{_closest(name, accepted)}; it takes '
                f"{', '.join(accepted)}")


def check_loops(cfg, scope: str) -> None:
    """``train_cfg``/``val_cfg``/``test_cfg`` against their loop classes,
    chosen as ``Runner.build_*_loop`` chooses them."""
    from mmengine.runner import (EpochBasedTrainLoop, IterBasedTrainLoop,
                                 TestLoop, ValLoop)
    loops = _registry(scope).LOOPS
    for key, default, caller_args in (
            ('train_cfg', None, ('runner', 'dataloader')),
            ('val_cfg', ValLoop, ('runner', 'dataloader', 'evaluator')),
            ('test_cfg', TestLoop, ('runner', 'dataloader', 'evaluator'))):
        loop_cfg = cfg.get(key, None)
        if not loop_cfg:
            continue
        loop_cfg = dict(loop_cfg)
        if 'type' in loop_cfg and 'by_epoch' in loop_cfg:
            raise UserInputError(
                f"{key}: sets both type={loop_cfg['type']!r} and by_epoch="
                f"{loop_cfg['by_epoch']!r}; expected only one of them")
        if 'type' in loop_cfg:
            cls = _resolve(loops, loop_cfg.pop('type'), f'{key}.type')
        elif key == 'train_cfg':
            by_epoch = loop_cfg.pop('by_epoch', None)
            if by_epoch is None:
                continue  # upstream's own error names by_epoch
            cls = EpochBasedTrainLoop if by_epoch else IterBasedTrainLoop
        else:
            cls = default
        _check_kwargs(cls, loop_cfg, key, caller_args)
        for count in ('max_iters', 'max_epochs', 'val_interval'):
            value = loop_cfg.get(count, None)
            if value is not None and (isinstance(value, bool) or
                                      not isinstance(value, (int, float))
                                      or value < 1):
                raise UserInputError(
                    f'{key}.{count}={value!r}: expected a number >= 1')


def check_optimizer(cfg, scope: str) -> None:
    """``optim_wrapper.optimizer``: arguments of the optimizer, ``lr > 0``."""
    optimizer = (cfg.get('optim_wrapper', None) or {}).get('optimizer', None)
    if not optimizer or 'type' not in optimizer:
        return  # several optimizers / a custom constructor: upstream's rules
    key = 'optim_wrapper.optimizer'
    optimizer = dict(optimizer)
    cls = _resolve(_registry(scope).OPTIMIZERS, optimizer.pop('type'),
                   f'{key}.type')
    _check_kwargs(cls, optimizer, key, ('params', ))
    lr = optimizer.get('lr', None)
    if isinstance(lr, bool) or (lr is not None and not (
            isinstance(lr, (int, float)) and lr > 0)):
        raise UserInputError(f'{key}.lr={lr!r}: expected a number > 0')


def _dataloaders(cfg):
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader', None)
        if loader:
            yield f'{split}_dataloader', loader


def check_batch_sizes(cfg) -> None:
    for key, loader in _dataloaders(cfg):
        size = loader.get('batch_size', None)
        if size is not None and (isinstance(size, bool)
                                 or not isinstance(size, int) or size < 1):
            raise UserInputError(
                f'{key}.batch_size={size!r}: expected an integer >= 1')


def _dataset_classes(dataset_cfg, datasets) -> dict | None:
    """``classes`` / ``thing_classes`` / ``stuff_classes`` of a dataset
    config: its ``metainfo`` over the class's ``METAINFO`` (wrappers: the
    first wrapped dataset)."""
    if 'dataset' in dataset_cfg:
        return _dataset_classes(dataset_cfg['dataset'], datasets)
    if 'datasets' in dataset_cfg and dataset_cfg['datasets']:
        return _dataset_classes(dataset_cfg['datasets'][0], datasets)
    type_ = dataset_cfg.get('type', None)
    cls = datasets.get(type_) if isinstance(type_, str) else type_
    info = dict(getattr(cls, 'METAINFO', None) or {})
    metainfo = dataset_cfg.get('metainfo', None)
    if isinstance(metainfo, dict):
        info.update(metainfo)
    keys = ('classes', 'thing_classes', 'stuff_classes')
    found = {k: tuple(info[k]) for k in keys if info.get(k, None)}
    return found or None


#: head types whose ``num_classes`` is not the dataset's, and why
_OWN_CLASS_COUNT = {
    'STDCHead': 'STDC detail head: 2 classes, boundary or not',
}


def _heads(model: dict):
    """(config key, head config) of every head with a class count."""
    def walk(node, key):
        if isinstance(node, dict) and node.get('type') in _OWN_CLASS_COUNT:
            return
        if isinstance(node, dict):
            if any(k in node for k in ('num_classes', 'num_things_classes',
                                       'num_stuff_classes')):
                yield key, node
            for name, child in node.items():
                if name.endswith('head') and name != 'rpn_head':
                    yield from walk(child, f'{key}.{name}')
        elif isinstance(node, (list, tuple)):
            for i, child in enumerate(node):
                yield from walk(child, f'{key}.{i}')
    for name, child in model.items():
        if name.endswith('head') and name != 'rpn_head':
            yield from walk(child, f'model.{name}')


def _expected_counts(classes: dict, head_key: str, scope: str) -> dict:
    """What each count of a head must equal for the dataset's classes.

    mmseg heads predict every class; mmdet's box/mask heads the thing
    classes, panoptic heads things and stuff.  Other mmdet ``num_classes``
    (e.g. HTC's COCO-stuff semantic head on a detection dataset) are left
    alone: they need not follow the dataset.
    """
    n_things = len(classes.get('thing_classes', classes['classes']))
    expected = dict(num_things_classes=n_things)
    if 'stuff_classes' in classes:
        expected['num_stuff_classes'] = len(classes['stuff_classes'])
    if scope == 'mmseg':
        expected['num_classes'] = len(classes['classes'])
    elif 'bbox_head' in head_key or 'mask_head' in head_key:
        expected['num_classes'] = n_things
    return expected


def _pipeline_checks(dataset_cfg):
    if 'dataset' in dataset_cfg:
        yield from _pipeline_checks(dataset_cfg['dataset'])
        return
    for i, step in enumerate(dataset_cfg.get('pipeline', None) or []):
        if isinstance(step, dict) and step.get('type') == 'CheckSegMap':
            yield i, step


def check_num_classes(cfg, scope: str) -> None:
    """Class counts of the heads and of ``CheckSegMap`` steps equal the
    dataset's: a mismatch otherwise surfaces as ``Target 5 is out of
    bounds`` in training or ``KeyError: np.int32(7)`` in evaluation."""
    datasets = _registry(scope).DATASETS
    model = cfg.get('model', None) or {}
    if 'language_model' in model or 'text_encoder' in model:
        # text-prompted models (GLIP, Grounding DINO, SAN): num_classes
        # counts text tokens / prompts, the classes come from the text
        model = {}
    for loader_key, loader in _dataloaders(cfg):
        dataset_cfg = loader.get('dataset', None)
        classes = dataset_cfg and _dataset_classes(dataset_cfg, datasets)
        if not classes or 'classes' not in classes:
            continue
        where = (f"{len(classes['classes'])} classes of {loader_key}.dataset"
                 f" ({', '.join(classes['classes'])})")
        for head_key, head in _heads(model):
            for count, expected in _expected_counts(
                    classes, head_key, scope).items():
                value = head.get(count, None)
                if value is not None and value != expected:
                    raise UserInputError(
                        f'{head_key}.{count}={value}: expected {expected} '
                        f'for the {where}')
        for i, step in _pipeline_checks(dataset_cfg):
            value = step.get('num_classes', None)
            if value != len(classes['classes']):
                raise UserInputError(
                    f'{loader_key}.dataset.pipeline.{i}.num_classes={value}:'
                    f" expected {len(classes['classes'])} for the {where}")


def check_work_dir_writable(work_dir: str) -> None:
    """The work dir is (or can be made) a directory we can write in."""
    if osp.exists(work_dir) and not osp.isdir(work_dir):
        raise UserInputError(
            f'work dir {work_dir} is a file; expected a directory (pass '
            f'--work-dir elsewhere)')
    try:
        os.makedirs(work_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=work_dir):
            pass
    except OSError as err:
        raise UserInputError(
            f'work dir {work_dir} is not a writable directory '
            f'({err.strerror}); pass --work-dir elsewhere') from None


def check_training_config(cfg, scope: str) -> None:
    """Everything above that a training run needs, before the Runner."""
    check_loops(cfg, scope)
    check_optimizer(cfg, scope)
    check_batch_sizes(cfg)
    check_num_classes(cfg, scope)
    check_work_dir_writable(cfg.work_dir)
