"""Per-item work over local worker processes, one BLAS/OpenMP/torch thread each.

Oversubscription (every worker using every core's BLAS threads) made one pipeline 4x slower here,
so worker processes are started with single-thread settings in their environment, which NumPy's BLAS
and torch (intra-op threads follow OMP_NUM_THREADS) read when they load. With one worker the work runs in the calling process (no start-up cost, easy to debug).

The same per-item work scales out over a dask.distributed cluster when a run names one (run.scheduler): 'local'
starts a LocalCluster of single-thread worker processes here, any other value is the address of a running
scheduler. dask is imported only then, so agf works without it. Workers share nothing but the file system: every
task reads its inputs from and writes its outputs to shared storage, atomically, as the local workers do.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm.auto import tqdm

from agf.errors import ConfigError

Item = TypeVar("Item")
Result = TypeVar("Result")

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
# glibc malloc keeping freed memory, in the agf process (keep_freed_memory, called by cli.main) and in every worker
# (MALLOC_ENV, read when a worker's glibc starts): blocks up to MALLOC_MMAP_THRESHOLD come from the heap and are
# reused once freed, rather than mapped afresh and handed back to the kernel, which zeroes every page again at the
# next use; the heap's free top goes back to the kernel only beyond MALLOC_TRIM_THRESHOLD. By default glibc maps
# every block over 32 MB: window features of one net page-faulted ~440 times per window (a batch of 1,024 windows
# frees ~1 GB of activations, the fp32 first layer's alone 360 MB) and spent as much system time as user time
# (benchmarks/bench_memory.py); a prepare worker page-faulted ~3,300 fresh pages (13 MB) per track and ran each
# track 1.19-1.27x slower (benchmarks/profile_prepare.py). What stays mapped is bounded by the largest batch.
MALLOC_MMAP_THRESHOLD = 512 << 20
# Over what a batch frees at once (1 GiB was not: the heap was trimmed and faulted afresh every few batches);
# the largest value mallopt takes (an int).
MALLOC_TRIM_THRESHOLD = (2 << 30) - 1
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MALLOC_MMAP_THRESHOLD),
              "MALLOC_TRIM_THRESHOLD_": str(MALLOC_TRIM_THRESHOLD)}
WORKER_ENV = {**{name: "1" for name in THREAD_ENV_VARS}, **MALLOC_ENV}
# mallopt(3) parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


# run.scheduler: a LocalCluster started here; any other non-empty value is a scheduler's address.
LOCAL_SCHEDULER = "local"
# Seconds to wait for a scheduler to answer before the run stops with an error.
CONNECT_TIMEOUT_S = 5
# Reruns of a dask task that raised. A task whose worker died is rescheduled by the scheduler itself (up to its
# distributed.scheduler.allowed-failures); then it fails with KilledWorker.
TASK_RETRIES = 2
# The clients of this process, by (scheduler, workers of a LocalCluster): one per run, kept until exit.
_clients: dict[tuple[str, int], Any] = {}

# prctl option: the signal a process receives when its parent dies (Linux).
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Make this (worker) process die with the process that started it, even when that one is killed with
    SIGKILL, so no orphan keeps computing and writing. Linux only; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def keep_freed_memory() -> bool:
    """Give this process's glibc malloc MALLOC_ENV's thresholds now (the environment is read only when a process
    starts). True when glibc took them; False elsewhere (no glibc), where nothing changes."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    taken = [mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD), mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)]
    return taken == [1, 1]


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextmanager
def worker_env() -> Iterator[None]:
    """Temporarily set the worker environment (one BLAS/OpenMP thread, WORKER_ENV) so spawned children
    inherit it."""
    saved = {name: os.environ.get(name) for name in WORKER_ENV}
    os.environ.update(WORKER_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def can_start_processes() -> bool:
    """False in a daemonic process (a dask worker by default), which may not start child processes."""
    return not multiprocessing.current_process().daemon


def _distributed() -> Any:
    """The dask.distributed module, or a ConfigError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ConfigError("run.scheduler is set but dask.distributed is not installed: "
                          "pip install 'dask[distributed]>=2024.1'") from None
    return distributed


def dask_client(scheduler: str, workers: int) -> Any:
    """The distributed.Client of run.scheduler, made on first use and kept for the run: 'local' starts a
    LocalCluster of `workers` single-thread processes; an address connects to that scheduler (a ConfigError when
    none answers within CONNECT_TIMEOUT_S)."""
    key = (scheduler, workers if scheduler == LOCAL_SCHEDULER else 0)
    if key in _clients:
        return _clients[key]
    distributed = _distributed()
    if scheduler == LOCAL_SCHEDULER:
        with worker_env():
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                               dashboard_address=None)
        client = distributed.Client(cluster)
    else:
        _check_handshake(distributed, scheduler)
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise _no_scheduler(scheduler, f"{type(exc).__name__}: {exc}") from None
    if not _clients:
        atexit.register(close_clients)
    _clients[key] = client
    return client


def _no_scheduler(scheduler: str, why: str) -> ConfigError:
    """The error of a run.scheduler address where no dask scheduler answers, and why."""
    return ConfigError(f"run.scheduler = {scheduler!r}: no dask scheduler answered within {CONNECT_TIMEOUT_S} s "
                       f"({why}); start one (`dask scheduler`) or fix the address")


async def _comm_handshake(distributed: Any, address: str) -> None:
    """Open a dask comm to `address` (dask's handshake: both ends send their info first) and close it."""
    comm = await distributed.comm.connect(address, timeout=CONNECT_TIMEOUT_S)
    await comm.close()


def _check_handshake(distributed: Any, scheduler: str) -> None:
    """A ConfigError unless a dask scheduler at the address completes dask's handshake within CONNECT_TIMEOUT_S.
    distributed.Client waits for the handshake without a time limit (an HTTP server there kept it waiting for
    minutes) and reads another service's first bytes as a message length (a 3 EiB allocation)."""
    try:
        distributed.comm.resolve_address(scheduler)
    except ValueError as exc:
        raise ConfigError(f"run.scheduler = {scheduler!r}: not a scheduler address ({exc}); give 'local' or "
                          "tcp://HOST:PORT") from None
    except OSError as exc:  # a host name without an address
        raise _no_scheduler(scheduler, f"{type(exc).__name__}: {exc}") from None
    try:
        with ThreadPoolExecutor(1) as thread:  # an event loop of its own, also where the caller runs one (Jupyter)
            thread.submit(asyncio.run, asyncio.wait_for(_comm_handshake(distributed, scheduler),
                                                        CONNECT_TIMEOUT_S)).result()
    except TimeoutError:
        raise _no_scheduler(scheduler, "something accepted the connection but sent no dask handshake: another "
                            "service answers there") from None
    except OSError as exc:  # nothing listens there
        raise _no_scheduler(scheduler, f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # whatever another service's bytes make of dask's reader (MemoryError, msgpack's errors)
        raise _no_scheduler(scheduler, f"what answers is not a dask scheduler: {type(exc).__name__} reading its "
                            "handshake") from None


def check_scheduler(scheduler: str, workers: int) -> None:
    """Before any compute: a ConfigError when run.scheduler cannot be used (dask missing, no dask scheduler at the
    address: nothing, or another service, answers there). A remote scheduler is connected now and the connection kept; a LocalCluster starts on first use."""
    if scheduler == LOCAL_SCHEDULER:
        _distributed()
    elif scheduler:
        dask_client(scheduler, workers)


def close_clients() -> None:
    """Close every client of this process and the LocalClusters they started."""
    while _clients:
        (scheduler, _), client = _clients.popitem()
        cluster = client.cluster
        client.close()
        if scheduler == LOCAL_SCHEDULER and cluster is not None:
            cluster.close()


def _cluster_executor(client: Any, resource: str) -> tuple[Executor, int]:
    """A concurrent.futures executor over the cluster's workers and how many tasks they run at once. Each task
    asks for one unit of `resource` (e.g. 'GPU') when some worker declares it (`dask worker --resources GPU=1`)."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    declared = bool(resource) and any(resource in worker.get("resources", {}) for worker in workers)
    options: dict[str, Any] = {"resources": {resource: 1}} if declared else {}
    executor = client.get_executor(pure=False, retries=TASK_RETRIES, **options)
    return executor, max(1, sum(worker["nthreads"] for worker in workers))


@contextmanager
def executor(workers: int, scheduler: str = "", resource: str = "") -> Iterator[tuple[Executor, int]]:
    """The executor of a run and its number of parallel slots: `workers` local processes, or with a
    scheduler its cluster (see dask_client; `resource` as in _cluster_executor)."""
    if scheduler:
        cluster, slots = _cluster_executor(dask_client(scheduler, workers), resource)
        with cluster:
            yield cluster, slots
        return
    pool = worker_pool(workers)
    try:
        yield pool, workers
    finally:  # every result was read (or is no longer wanted): the workers exit on their own, without a wait
        pool.shutdown(wait=False, cancel_futures=True)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` spawned processes with one thread each (WORKER_ENV), which die with this process."""
    with worker_env():
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent
        )
        # A spawn pool starts a process per submit until it has `workers`: start them all now, while the
        # environment they must inherit is set (started later, they would see the caller's).
        for _ in range(workers):
            pool.submit(os.getpid)
    return pool


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
    with executor(workers) as (pool, _):
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


def _with_freed_memory(func: Callable[[Item], Result], item: Item) -> Result:
    """func(item) in a dask worker, whose process agf did not start: its malloc keeps freed memory too."""
    keep_freed_memory()
    return func(item)


def map_unordered(
    func: Callable[[Item], Result],
    items: Iterable[Item],
    workers: int,
    desc: str = "",
    total: int | None = None,
    progress: bool = True,
    unit: str = "it",
    scheduler: str = "",
    resource: str = "",
    on_error: Callable[[Item, Exception], Result] | None = None,
) -> Iterator[Result]:
    """Yield func(item) for every item, in completion order, with a progress bar.

    `func` must be a picklable top-level function when workers > 1 or a scheduler is given (see executor).
    At most 4 tasks per slot are in flight, so a huge item list is never materialised as futures. Without a
    scheduler, one worker (or a process that may not start processes) runs func here. `on_error` gives the
    result of an item whose task raised (e.g. its worker died each time); without it the error propagates.
    """
    items = list(items) if total is None else items
    total = len(items) if total is None else total  # type: ignore[arg-type]
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not progress, dynamic_ncols=True)
    try:
        if not scheduler and (workers <= 1 or not can_start_processes()):
            for item in items:
                yield func(item)
                bar.update(1)
            return
        with executor(workers, scheduler, resource) as (pool, slots):
            pending: dict[Future[Result], Item] = {}
            iterator = iter(items)
            exhausted = False
            while pending or not exhausted:
                while not exhausted and len(pending) < 4 * slots:
                    try:
                        item = next(iterator)
                    except StopIteration:
                        exhausted = True
                    else:
                        task = (_with_freed_memory, func, item) if scheduler else (func, item)
                        pending[pool.submit(*task)] = item
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield _outcome(future, pending.pop(future), on_error)
                    bar.update(1)
    finally:
        bar.close()


def _outcome(
    future: Future[Result], item: Item, on_error: Callable[[Item, Exception], Result] | None
) -> Result:
    """A finished task's result, or on_error's for its item when it raised and on_error is given."""
    if on_error is None:
        return future.result()
    try:
        return future.result()
    except Exception as exc:  # whatever the task raised, or the cluster's KilledWorker: the caller's on_error decides
        return on_error(item, exc)
