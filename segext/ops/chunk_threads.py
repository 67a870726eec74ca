"""Worker threads for chunked CPU ops, each running on ONE intra-op thread.

A chunked op (see :mod:`segext.ops.deform_conv_cpu`) parallelises over
independent chunks rather than inside every op: ``torch.get_num_threads()``
worker threads take chunks from a shared queue and run them with a single
OpenMP thread each; torch releases the GIL inside ops, so the workers' ops
run in parallel without an OpenMP fork/join per op. On a CPU shared with
other jobs a descheduled OpenMP thread stalls every parallel region it
belongs to, while an independent chunk only waits for its own thread
(measurements in ``docs/deform_conv.md``).

Each worker limits *its own* OpenMP team (OpenMP's ``nthreads-var`` is a
per-thread setting; oneDNN follows it) through the OpenMP runtime torch is
linked with, and its own MKL thread count (``MKL_Set_Num_Threads_Local``:
torch's per-thread initialisation sets MKL's thread-local count to the
intra-op count, which MKL prefers to OpenMP's, so without it each worker's
``torch.mm`` ran on all intra-op threads: docs/deform_conv.md, "Seventh
round"). ``torch.set_num_threads`` is never called: it also
changes torch's process-wide default (every thread that starts using torch
afterwards, and ``torch.get_num_threads()`` in the caller). Where that
runtime cannot be reached (torch built without OpenMP, an OpenMP runtime
that does not export ``omp_set_num_threads``), :func:`num_workers` is 1 and
chunks run in the calling thread with torch's own intra-op threads.

:class:`InOrderSum` adds the chunks' gradient contributions in chunk order,
whichever worker finished first, so a chunked backward is deterministic.
"""
import ctypes
import os
import os.path as osp
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ['num_workers', 'map_chunks', 'InOrderSum']

_OPENMP_NAMES = ('libgomp', 'libiomp5', 'libomp')


def _find_openmp() -> Optional[Callable[[int], int]]:
    """``omp_set_num_threads`` of the OpenMP runtime torch uses, or None.

    Prefers a runtime mapped from torch's own ``lib/`` (the wheels bundle
    one) over whatever the process resolves first.
    """
    if 'OpenMP' not in torch.__config__.parallel_info():
        return None
    torch_lib = osp.join(osp.dirname(torch.__file__), 'lib')
    candidates = []
    try:
        with open('/proc/self/maps') as maps:
            for line in maps:
                path = line.split()[-1]
                if osp.basename(path).startswith(_OPENMP_NAMES):
                    candidates.append(path)
    except OSError:
        pass
    candidates.sort(key=lambda p: not p.startswith(torch_lib))
    return _first_int_function([*dict.fromkeys(candidates), None],
                               'omp_set_num_threads', None)


def _find_mkl_local() -> Optional[Callable[[int], int]]:
    """``MKL_Set_Num_Threads_Local`` of the MKL in torch, or None.

    The C interface (by value); the lower-case ``mkl_set_num_threads_local``
    that torch's library also exports is the Fortran one (by pointer).
    """
    if not torch.backends.mkl.is_available():
        return None
    torch_cpu = osp.join(osp.dirname(torch.__file__), 'lib',
                         'libtorch_cpu.so')
    return _first_int_function([torch_cpu, None],
                               'MKL_Set_Num_Threads_Local', ctypes.c_int)


def _first_int_function(libs: list, name: str,
                        restype) -> Optional[Callable[[int], int]]:
    """C function ``name(int)`` of the first of ``libs`` (paths; None: the
    process itself) that exports it, or None."""
    for lib in libs:
        try:
            fn = getattr(ctypes.CDLL(lib), name)
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], restype
        return fn
    return None


_OMP_SET_NUM_THREADS = _find_openmp()
_MKL_SET_NUM_THREADS_LOCAL = _find_mkl_local()
_LOCAL = threading.local()


def _use_one_intraop_thread() -> None:
    """Give the calling (worker) thread a one-thread OpenMP team."""
    if getattr(_LOCAL, 'single', False):
        return
    # torch sets a thread's OpenMP team size on its first parallel op
    # (lazily, per thread); do that first so it cannot undo ours
    torch.get_num_threads()
    _OMP_SET_NUM_THREADS(1)
    if _MKL_SET_NUM_THREADS_LOCAL is not None:
        _MKL_SET_NUM_THREADS_LOCAL(1)
    _LOCAL.single = True


def num_workers() -> int:
    """Worker threads a chunked op may use: torch's intra-op thread count
    (of the calling thread), or 1 when per-thread limits are unavailable."""
    if _OMP_SET_NUM_THREADS is None:
        return 1
    return torch.get_num_threads()


def map_chunks(run: Callable[[Iterator], object], chunks: list,
               workers: int) -> list:
    """Split ``chunks`` over ``workers`` threads, each on one intra-op thread.

    ``run`` gets an iterator that hands out chunks until none are left (so a
    worker that the OS schedules less takes fewer) and returns its partial
    result; the list of those is returned. With one worker ``run`` runs in
    the calling thread, with the calling thread's intra-op threads. Runs
    under ``torch.no_grad()`` (grad mode is thread-local).
    """
    workers = max(1, min(workers, len(chunks)))
    if workers == 1:
        with torch.no_grad():
            return [run(iter(chunks))]
    pending = iter(chunks)
    lock = threading.Lock()

    def next_chunks():
        while True:
            with lock:
                chunk = next(pending, None)
            if chunk is None:
                return
            yield chunk

    def worker():
        _use_one_intraop_thread()
        with torch.no_grad():
            return run(next_chunks())

    futures = [_pool(workers).submit(worker) for _ in range(workers)]
    return [future.result() for future in futures]


_POOL = None  # (process id, size, ThreadPoolExecutor)
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The worker threads, kept between calls (their oneDNN/MKL state too).

    Re-created in a forked child (threads do not survive ``fork``, e.g. in
    DataLoader workers) and when more workers are asked for.
    """
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < workers:
            if _POOL is not None and _POOL[0] == os.getpid():
                _POOL[2].shutdown(wait=False)
            _POOL = (os.getpid(), workers,
                     ThreadPoolExecutor(workers,
                                        thread_name_prefix='segext_chunks'))
        return _POOL[2]


class InOrderSum:
    """Adds per-chunk gradient contributions in chunk order.

    Worker threads take chunks dynamically, so which thread sums what (and
    when) varies from call to call; float addition is not associative, so
    summing as chunks finish would make the backward -- and a seeded
    training run -- non-deterministic.  Contributions of a chunk that
    finishes early wait (held in memory) until every earlier chunk has been
    added.

    Args:
        grad_rows (list[Tensor], optional): row-gradient totals, per piece.
        grad_weights (list[Tensor], optional): weight-gradient totals.
    """

    def __init__(self, grad_rows: Optional[List[Tensor]],
                 grad_weights: Optional[List[Tensor]]) -> None:
        self.grad_rows, self.grad_weights = grad_rows, grad_weights
        self.lock = threading.Lock()
        self.waiting = {}  # chunk id -> (weights, rows)
        self.next = 0

    def __call__(self, chunk_id: int, weights: List[Optional[Tensor]],
                 rows: List[Tuple[int, int, Tensor]]) -> None:
        """Add chunk ``chunk_id``'s ``weights`` (one per total, or None) and
        ``rows`` ((piece, first row, gradient rows)) once its turn comes."""
        with self.lock:
            self.waiting[chunk_id] = (weights, rows)
            while self.next in self.waiting:
                weights, rows = self.waiting.pop(self.next)
                for total, part in zip(self.grad_weights or (), weights):
                    if part is not None:
                        total += part
                for piece, first, part in rows:
                    self.grad_rows[piece][first:first + len(part)] += part
                self.next += 1

    def check_done(self, num_chunks: int) -> None:
        assert self.next == num_chunks and not self.waiting, \
            f'{self.next} of {num_chunks} chunks summed'
