"""Process-level helpers for the command-line tools."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from .config import UserInputError

__all__ = ['user_errors_to_exit', 'build_runner']

#: Exceptions that, while a config is turned into a runner or a dataset is
#: opened, mean "the input is wrong" rather than "segext has a bug".
_INPUT_ERRORS = (UserInputError, FileNotFoundError, KeyError, TypeError,
                 ValueError)


@contextmanager
def user_errors_to_exit(tool: str, stage: str, only=_INPUT_ERRORS,
                        cfg_options=None):
    """Print ``tool: error: <stage>: <message>`` and exit 2 instead of a deep
    traceback.  ``SEGEXT_DEBUG=1`` re-raises for the full traceback.

    ``cfg_options`` (the parsed ``--cfg-options``) are repeated in the message:
    a wrong override is the usual culprit when a module refuses its args."""
    try:
        yield
    except only as err:
        if os.environ.get('SEGEXT_DEBUG'):
            raise
        msg = _message(err)
        where = '' if stage in msg else f'{stage}: '
        if cfg_options:
            given = ' '.join(f'{k}={v!r}' for k, v in cfg_options.items())
            msg += f'\n(with --cfg-options {given})'
        print(f'{tool}: error: {where}{msg}\n'
              f'(set SEGEXT_DEBUG=1 for the full traceback)', file=sys.stderr)
        sys.exit(2)


def _message(err: BaseException) -> str:
    """The user-facing message of ``err``.

    An exception raised in a DataLoader worker is re-raised by torch as
    ``type(err)('Caught ... in DataLoader worker process 0.\nOriginal
    Traceback ...\n<module>.<Type>: <message>')``: keep the message.
    """
    msg = str(err.args[0] if (isinstance(err, KeyError) and err.args)
              else err)
    if msg.startswith('Caught ') and '\nOriginal Traceback' in msg:
        last = msg.rstrip().splitlines()[-1]
        prefix = f'{type(err).__name__}: '
        if prefix in last:
            msg = last.split(prefix, 1)[1]
    return msg


def build_runner(cfg):
    """``RUNNERS.build`` when the config names a ``runner_type``, else
    ``Runner.from_cfg`` -- exactly the upstream tools' choice."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
