"""What every benchmark shares: a measurement (repetitions of a figure beside a baseline taken in the same run),
fixed costs split from throughput, and a description of the machine."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

# One BLAS/OpenMP thread per process (this one and the workers it spawns), set before NumPy and torch load;
# `make bench` sets the same. Import this module first.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import torch  # noqa: E402


@dataclass
class Measurement:
    """One row of the suite: a figure repeated `reps` times and, when it has one, its baseline measured in the
    same run (ratio = median figure / median baseline)."""

    name: str
    unit: str
    values: list[float]
    baseline_name: str = ""
    baseline_values: list[float] = field(default_factory=list)
    note: str = ""
    gpu: float | None = None  # the figure on a CUDA device, where one is present and the row has a GPU variant

    @property
    def figure(self) -> float:
        return statistics.median(self.values)

    @property
    def baseline(self) -> float | None:
        return statistics.median(self.baseline_values) if self.baseline_values else None

    @property
    def ratio(self) -> float | None:
        baseline = self.baseline
        return None if baseline is None else self.figure / baseline

    @property
    def reps(self) -> str:
        """Repetitions of the figure, and of the baseline where their number differs ('5/6')."""
        counts = [len(self.values)] + ([len(self.baseline_values)] if self.baseline_values else [])
        return "/".join(str(c) for c in dict.fromkeys(counts))

    def as_dict(self) -> dict:
        """The row as results.json stores it: the repetitions and their medians."""
        return {**asdict(self), "figure": self.figure, "baseline": self.baseline, "ratio": self.ratio,
                "reps": self.reps}


def wall(func: Callable[[], object]) -> float:
    """Seconds func() takes."""
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def marginal_rate(seconds_for: Callable[[int], float], small: int, large: int) -> tuple[float, float]:
    """(items/s, fixed seconds) from two runs of `small` and `large` items: the rate of the extra items, so
    start-up, warm-up and per-run costs (a pool's spawn, an index written at the end) cancel out."""
    t_small, t_large = seconds_for(small), seconds_for(large)
    rate = (large - small) / (t_large - t_small)
    return rate, t_small - small / rate


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux), to tell e.g. bf16 support."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next((set(line.split(":", 1)[1].split()) for line in handle if line.startswith("flags")), set())
    except OSError:
        return set()


def machine() -> dict:
    """What the numbers were measured on, and how loaded it was when the suite began."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "bf16_instructions": "avx512_bf16" in cpu_flags() or "amx_bf16" in cpu_flags(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": gpu,
        "load_average_before": list(os.getloadavg()),
    }
