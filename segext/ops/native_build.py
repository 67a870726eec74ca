"""Build and load segext's small C++ CPU kernels (``segext/ops/csrc``).

The kernels are plain C++ (no PyTorch headers, no Python API): they are
compiled on first use with the machine's C++ compiler in under a second
and called through :mod:`ctypes` (which releases the GIL, so the chunk
workers of :mod:`segext.ops.chunk_threads` run them in parallel). The
library is cached, keyed by the source, the compiler and this CPU
(``-march=native``), in ``$SEGEXT_CACHE_DIR`` or ``~/.cache/segext``
(``$TMPDIR/segext-kernels-<uid>`` when that cannot be written), and
written atomically, so processes that start together (DDP workers) do not
see half-written files.

Where no compiler is found or the build fails, :func:`load_kernels`
returns None after one warning naming the reason, and the callers use
their pure-PyTorch path (same results, slower). ``SEGEXT_NATIVE=0`` in the
environment skips the build (e.g. on a machine whose compiler is broken).
"""
import ctypes
import hashlib
import os
import os.path as osp
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from typing import Dict, Optional, Tuple

import torch

__all__ = ['KERNEL_SUFFIX', 'kernel_cache_dir', 'load_kernels', 'pointer']

CSRC = osp.join(osp.dirname(osp.abspath(__file__)), 'csrc')
# -fno-trapping-math: no program here observes floating-point traps; it
# lets the compiler vectorise selects such as clamps (values unchanged)
FLAGS = ('-O3', '-march=native', '-fno-trapping-math', '-std=c++17', '-fPIC',
         '-shared')

# the kernels' exported names end in the dtype they take
KERNEL_SUFFIX = {torch.float32: 'f32', torch.float64: 'f64'}

_LOCK = threading.Lock()
_LOADED: Dict[str, Optional[ctypes.CDLL]] = {}


def kernel_cache_dir() -> str:
    """Where compiled kernels are kept."""
    root = os.environ.get('SEGEXT_CACHE_DIR') or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.expanduser('~/.cache'),
        'segext')
    return osp.join(root, 'kernels')


def _compiler() -> Optional[str]:
    for name in (os.environ.get('CXX'), 'c++', 'g++', 'clang++'):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_signature() -> str:
    """Model and feature flags of this CPU (``-march=native`` binaries
    must not be shared with a different CPU through a shared home)."""
    try:
        with open('/proc/cpuinfo') as f:
            lines = [
                ln for ln in f
                if ln.startswith(('model name', 'flags', 'Features'))
            ]
        return ''.join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _key(source: str, compiler: str) -> str:
    try:
        version = subprocess.run([compiler, '--version'],
                                 capture_output=True,
                                 text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ''
    with open(source, 'rb') as f:
        text = f.read()
    digest = hashlib.sha256(text)
    for part in (compiler, version, ' '.join(FLAGS), _cpu_signature()):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def _build(name: str) -> ctypes.CDLL:
    """Compile ``csrc/<name>.cpp`` (or take the cached build) and load it;
    raises RuntimeError with the reason."""
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError('no C++ compiler found (CXX, c++, g++, clang++)')
    source = osp.join(CSRC, f'{name}.cpp')
    # earlier builds for this CPU are replaced, other CPUs' builds kept
    prefix = f'{name}-{_short_hash(_cpu_signature())}-'
    filename = f'{prefix}{_key(source, compiler)}.so'
    for cache in _cache_dirs():
        target = osp.join(cache, filename)
        if osp.exists(target):
            return ctypes.CDLL(target)
    cache, tmp = _writable_cache()
    target = osp.join(cache, filename)
    try:
        done = subprocess.run([compiler, *FLAGS, source, '-o', tmp],
                              capture_output=True,
                              text=True,
                              timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f'{compiler} failed on {source}:\n'
                               f'{done.stderr.strip()[-2000:]}')
        os.replace(tmp, target)  # atomic: other processes see all or none
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    _remove_stale(cache, prefix, target)
    return ctypes.CDLL(target)


def _cache_dirs() -> Tuple[str, str]:
    """The kernel cache, then a per-user one in the temp directory (for a
    read-only home)."""
    return (kernel_cache_dir(),
            osp.join(tempfile.gettempdir(), f'segext-kernels-{os.getuid()}'))


def _writable_cache() -> Tuple[str, str]:
    """The first cache directory a build can be written to, and an empty
    file in it for the compiler's output."""
    errors = []
    for cache in _cache_dirs():
        try:
            os.makedirs(cache, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix='.so', dir=cache)
        except OSError as e:
            errors.append(f'{cache}: {e.strerror or e}')
            continue
        os.close(fd)
        return cache, tmp
    raise RuntimeError('no writable kernel cache (' + '; '.join(errors) +
                       ')')


def _remove_stale(cache: str, prefix: str, keep: str) -> None:
    """Delete earlier builds named ``prefix*`` (another source or
    compiler); a process still using one keeps its mapping."""
    for entry in os.listdir(cache):
        path = osp.join(cache, entry)
        if entry.startswith(prefix) and entry.endswith('.so') \
                and path != keep:
            try:
                os.remove(path)
            except OSError:
                pass


def load_kernels(name: str) -> Optional[ctypes.CDLL]:
    """The loaded library of ``csrc/<name>.cpp``, or None (warned once)
    when it cannot be built here."""
    if os.environ.get('SEGEXT_NATIVE', '1') == '0':
        return None
    with _LOCK:
        if name not in _LOADED:
            try:
                _LOADED[name] = _build(name)
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                warnings.warn(
                    f'segext: the C++ CPU kernels {name!r} are not '
                    f'available ({e}); using the slower pure-PyTorch path')
                _LOADED[name] = None
        return _LOADED[name]


def pointer(tensor: Optional[torch.Tensor],
            element: int = 0) -> ctypes.c_void_p:
    """``tensor``'s data address ``element`` elements in, as a kernel
    argument (NULL for None)."""
    if tensor is None:
        return ctypes.c_void_p(None)
    return ctypes.c_void_p(tensor.data_ptr() + element * tensor.element_size())
