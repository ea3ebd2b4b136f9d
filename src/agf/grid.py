"""The experiment grid of the paper: cases (an architecture over a task subset, for one seed) and their nets.

STN for each subset, MTN for each subset of two or more tasks (for one task the STN and the MTN are the same
net), and per N >= 2 a wSTN matched to the MTN over the first N grid tasks. Each net is trained once and
shared by every case that uses it. `walk_grid` is the one walk of a grid: agf.pipeline.run_grid trains and fits
what it yields, agf.plan.make_plan counts it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from agf.config import GridConfig
from agf.errors import ConfigError
from agf.tasks import canonical_tasks, setup_label, task_subsets
from agf.training.spec import NetSpec, net_specs, wstn_spec


@dataclass(frozen=True)
class Case:
    """One row of the paper's tables: an architecture over a task subset, for one seed."""

    arch: str  # 'stn', 'mtn' or 'wstn'
    tasks: str  # task letters in the order g, m, d, e, s; a wSTN has 'g'
    n_tasks: int  # for a wSTN: the number of tasks of the setups it is matched to
    seed: int

    @property
    def label(self) -> str:
        return setup_label(self.arch, self.tasks, self.n_tasks)


def grid_subsets(grid: GridConfig) -> list[str]:
    """The task subsets to run: the config's list, or every non-empty subset of grid.tasks (paper order)."""
    allowed = set(grid.tasks)
    if grid.subsets:
        subsets = [canonical_tasks(s) for s in grid.subsets]
        bad = [s for s, c in zip(grid.subsets, subsets) if set(s) - allowed or len(c) != len(s) or not c]
        if bad:
            raise ConfigError(f"grid.subsets: {bad[0]!r} is not a subset of grid.tasks {''.join(grid.tasks)}")
        return list(dict.fromkeys(subsets))
    return task_subsets(grid.tasks)


def grid_cases(grid: GridConfig, subsets: Sequence[str]) -> list[Case]:
    """Every case of the grid, seed by seed."""
    archs = grid.archs
    cases = []
    for seed in grid.seeds:
        for subset in subsets:
            if "stn" in archs or len(subset) == 1:
                cases.append(Case("stn", subset, len(subset), seed))
            if "mtn" in archs and len(subset) > 1:
                cases.append(Case("mtn", subset, len(subset), seed))
        if "wstn" in archs:
            for n in sorted({len(s) for s in subsets if len(s) > 1}):
                cases.append(Case("wstn", "g", n, seed))
    return cases


def case_specs(case: Case, task_outputs: Mapping[str, int], grid_tasks: Sequence[str], n_mels: int) -> list[NetSpec]:
    """The nets a case needs. A wSTN for N is matched to the MTN over the first N grid tasks (g first)."""
    if case.arch == "wstn":
        matched = canonical_tasks(grid_tasks)[: case.n_tasks]
        return [wstn_spec("mtn", {t: task_outputs[t] for t in matched}, n_mels)]
    return net_specs(case.arch, {t: task_outputs[t] for t in case.tasks}, n_mels)  # type: ignore[arg-type]


@dataclass(frozen=True)
class GridStep:
    """One case of a grid walk and the nets its transfer reads, in order."""

    case: Case
    specs: tuple[NetSpec, ...]


def walk_grid(grid: GridConfig, task_outputs: Mapping[str, int], n_mels: int,
              unavailable: Collection[str] = ()) -> list[GridStep]:
    """Every case of the grid with its nets, seed by seed; the subsets that use an `unavailable` task (e without
    Essentia) are left out, and a wSTN is matched to the first N grid tasks that are available."""
    subsets = [s for s in grid_subsets(grid) if not set(s) & set(unavailable)]
    grid_tasks = [t for t in grid.tasks if t not in unavailable]
    return [GridStep(case, tuple(case_specs(case, task_outputs, grid_tasks, n_mels)))
            for case in grid_cases(grid, subsets)]


def grid_nets(steps: Sequence[GridStep]) -> list[tuple[NetSpec, int]]:
    """The distinct nets (spec, seed) of a walk, in the order the walk first needs them."""
    return list(dict.fromkeys((spec, step.case.seed) for step in steps for spec in step.specs))
