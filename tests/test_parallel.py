"""agf.parallel: worker processes die with the process that started them."""

from __future__ import annotations

import os
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
