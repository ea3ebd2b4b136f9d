"""The wall time of each stage of a run, kept in WORKDIR/stage-times.json and printed at its end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agf.fileio import read_json, write_json_atomic
from agf.report.markup import duration_text
from agf.workdir import WorkDir

STAGE_TIMES_FILE = "stage-times.json"


@dataclass
class StageTimes:
    """Wall seconds per stage of one run, summed over the stage's parts (nets and transfers alternate in the
    grid): what `agf run` and `agf demo` write to WORKDIR/stage-times.json and print at the end."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the wall time of the block to `stage`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started

    def line(self) -> str:
        """'stage times: prepare 22 s, nets 3 min 57 s, ... (total 9 min 41 s)'."""
        parts = [f"{stage} {duration_text(seconds)}" for stage, seconds in self.seconds.items()]
        return f"stage times: {', '.join(parts)} (total {duration_text(sum(self.seconds.values()))})"

    def write(self, workdir: WorkDir) -> Path:
        """WORKDIR/stage-times.json: the seconds per stage, the total and when it was measured."""
        path = workdir.root / STAGE_TIMES_FILE
        write_json_atomic(path, {"stages": [{"stage": k, "seconds": round(v, 2)} for k, v in self.seconds.items()],
                                 "total": round(sum(self.seconds.values()), 2),
                                 "measured": datetime.now(UTC).isoformat(timespec="seconds")})
        return path


def recorded_stage_times(workdir: WorkDir) -> tuple[dict[str, float], str]:
    """The seconds per stage WORKDIR/stage-times.json records and when they were measured; nothing when absent."""
    try:
        recorded = read_json(workdir.root / STAGE_TIMES_FILE)
        return ({row["stage"]: float(row["seconds"]) for row in recorded["stages"]},
                f"measured {recorded['measured']} by the run that wrote {STAGE_TIMES_FILE}")
    except (OSError, ValueError, KeyError, TypeError):
        return {}, ""

