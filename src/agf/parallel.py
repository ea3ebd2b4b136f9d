"""Per-item work over local worker processes, one BLAS/OpenMP/torch thread each.

Oversubscription (every worker using every core's BLAS threads) made one pipeline 4x slower here,
so worker processes are started with single-thread settings in their environment, which NumPy's BLAS
and torch (intra-op threads follow OMP_NUM_THREADS) read when they load. With one worker the work runs in the calling process (no start-up cost, easy to debug).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

from tqdm.auto import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


# prctl option: the signal a process receives when its parent dies (Linux).
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Make this (worker) process die with the process that started it, even when that one is killed with
    SIGKILL, so no orphan keeps computing and writing. Linux only; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextmanager
def single_thread_env() -> Iterator[None]:
    """Temporarily set thread-count variables so spawned children inherit them."""
    saved = {name: os.environ.get(name) for name in THREAD_ENV_VARS}
    os.environ.update({name: "1" for name in THREAD_ENV_VARS})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` spawned processes with one thread each, which die with this process."""
    with single_thread_env():
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent
        )


def map_ordered(
    func: Callable[[Item], Result], items: Iterable[Item], workers: int, in_flight: int | None = None
) -> Iterator[Result]:
    """Yield func(item) for every item, in the items' order, computing ahead in `workers` processes.

    `items` is consumed lazily (it may be a generator over a huge list) and at most `in_flight` results
    (default 2 per worker) wait at any time, so memory stays bounded. With workers <= 0, func runs here.
    """
    if workers <= 0:
        yield from map(func, items)
        return
    limit = max(1, in_flight or 2 * workers)
    with worker_pool(workers) as pool:
        pending: deque[Future[Result]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(func, item))
                if len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # a consumer that stops early does not wait for work nobody will read
            for future in pending:
                future.cancel()


def map_unordered(
    func: Callable[[Item], Result],
    items: Iterable[Item],
    workers: int,
    desc: str = "",
    total: int | None = None,
    progress: bool = True,
    unit: str = "it",
) -> Iterator[Result]:
    """Yield func(item) for every item, in completion order, with a progress bar.

    `func` must be a picklable top-level function when workers > 1. At most 4 tasks per worker
    are in flight, so a huge item list is never materialised as futures.
    """
    items = list(items) if total is None else items
    total = len(items) if total is None else total  # type: ignore[arg-type]
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1:
            for item in items:
                yield func(item)
                bar.update(1)
            return
        with worker_pool(workers) as pool:
            pending: set[Future[Result]] = set()
            iterator = iter(items)
            exhausted = False
            while pending or not exhausted:
                while not exhausted and len(pending) < 4 * workers:
                    try:
                        pending.add(pool.submit(func, next(iterator)))
                    except StopIteration:
                        exhausted = True
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
                    bar.update(1)
    finally:
        bar.close()
