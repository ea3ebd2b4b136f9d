"""Artist Group Factors (tasks m, d, e, s): dictionaries, artist bags of words, LDA, soft targets."""

from agf.factors.build import (
    FactorResult,
    build_factors,
    format_summary,
    load_track_targets,
)

__all__ = ["FactorResult", "build_factors", "format_summary", "load_track_targets"]
