"""agf.parallel: worker processes die with the process that started them; glibc malloc keeps freed memory in the
agf process and in its workers."""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import os, sys, time
from pathlib import Path
from agf.parallel import map_unordered

def slow(item):
    Path(sys.argv[1], str(os.getpid())).touch()
    time.sleep(60)
    return item

if __name__ == "__main__":
    for _ in map_unordered(slow, range(4), workers=2, progress=False):
        pass
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_workers_die_when_their_parent_is_killed(tmp_path: Path) -> None:
    """kill -9 of `agf prepare -j2` used to leave both workers computing and writing."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    pids = tmp_path / "pids"
    pids.mkdir()
    parent = subprocess.Popen([sys.executable, str(script), str(pids)])
    deadline = time.monotonic() + 60
    while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [int(p.name) for p in pids.iterdir()]
    assert len(workers) == 2 and all(alive(pid) for pid in workers)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


def test_map_ordered_keeps_order_and_reads_its_items_only_a_bounded_way_ahead() -> None:
    """A huge input list (a 10,000-file directory) is never materialised: at most `in_flight` items are pulled
    ahead of the consumer, and results come back in the items' order."""
    from agf.parallel import map_ordered

    pulled = []

    def items():
        for number in range(10_000):
            pulled.append(number)
            yield -number

    results = map_ordered(abs, items(), workers=1, in_flight=8)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    assert len(pulled) <= 3 + 8
    results.close()
    assert list(map_ordered(abs, [-3, -1, -2], workers=0)) == [3, 1, 2]


def worker_settings(_: int) -> dict[str, str | None]:
    """The environment a worker process sees."""
    from agf.parallel import WORKER_ENV

    return {name: os.environ.get(name) for name in WORKER_ENV}


def test_workers_run_one_thread_and_keep_freed_memory_and_the_caller_is_untouched() -> None:
    """Workers get one BLAS/OpenMP thread and glibc's larger malloc thresholds (a prepare worker otherwise
    page-faults its per-track arrays afresh every track); the calling process's environment is restored."""
    from agf.parallel import WORKER_ENV, map_unordered

    before = {name: os.environ.get(name) for name in WORKER_ENV}
    seen = list(map_unordered(worker_settings, range(2), workers=2, progress=False))
    assert seen == [WORKER_ENV, WORKER_ENV]
    assert int(WORKER_ENV["MALLOC_MMAP_THRESHOLD_"]) >= 32 << 20 and WORKER_ENV["OMP_NUM_THREADS"] == "1"
    assert {name: os.environ.get(name) for name in WORKER_ENV} == before


GLIBC = platform.libc_ver()[0] == "glibc"
BLOCK = 64 << 20  # over glibc's default mmap threshold (at most 32 MB), under MALLOC_MMAP_THRESHOLD


def touch_faults(_: int = 0) -> tuple[int, int]:
    """Minor page faults of writing a freshly malloc'd BLOCK and freeing it, twice: the second costs as much as the
    first when freed memory goes back to the kernel, next to nothing when it is kept."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    faults = []
    for _ in range(2):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(BLOCK)
        ctypes.memset(block, 1, BLOCK)
        libc.free(block)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return faults[0], faults[1]


def fresh_process_faults(keep: bool) -> tuple[bool, int, int]:
    """(what keep_freed_memory returned, touch_faults) in a new Python process without MALLOC_* variables."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import test_parallel; "
            "from agf.parallel import keep_freed_memory; "
            f"kept = keep_freed_memory() if {keep} else False; print(kept, *test_parallel.touch_faults())")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1]), int(out[2])


@pytest.mark.skipif(not GLIBC, reason="keep_freed_memory tunes glibc malloc")
def test_keep_freed_memory_makes_a_freed_block_reusable_without_fresh_pages() -> None:
    """Window features paid ~440 minor faults per window, every batch: their activation blocks went back to the
    kernel when freed and came back as fresh zeroed pages. After keep_freed_memory (what cli.main calls) a freed
    64-MB block is reused."""
    applied, first, second = fresh_process_faults(keep=True)
    assert applied and first > 1000 and second < first / 10
    applied, first, second = fresh_process_faults(keep=False)
    assert not applied and second > first / 2  # glibc's default, what the process had before


@pytest.mark.skipif(not GLIBC, reason="MALLOC_ENV tunes glibc malloc")
def test_workers_keep_freed_memory() -> None:
    """Worker processes get the same thresholds through their environment (MALLOC_ENV). One worker may run both
    tasks, and then its second task's first block is already kept (no faults at all): so the first block must fault
    in at least one task (the first a worker runs) and the second block in none."""
    from agf.parallel import map_unordered

    results = list(map_unordered(touch_faults, range(2), workers=2, progress=False))
    block_pages = BLOCK // resource.getpagesize()
    assert max(first for first, _ in results) > block_pages / 2
    assert all(second < block_pages / 10 for _, second in results)


def test_every_agf_command_keeps_freed_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """cli.main (the `agf` command, `python -m agf`, torchrun's entry) applies the setting before the command
    runs."""
    import agf.parallel
    from agf.cli import main

    calls = []
    monkeypatch.setattr(agf.parallel, "keep_freed_memory", lambda: calls.append(True))
    assert main(["train", "--workdir", str(tmp_path)]) == 1  # no config there: an error, after the setting
    assert calls == [True]
