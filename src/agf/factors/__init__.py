"""Artist Group Factors (tasks m, d, e, s): dictionaries, artist bags of words, LDA, soft targets."""

from agf.factors.build import TASKS, FactorResult, build_factors, format_summary, load_track_targets
from agf.factors.errors import FactorError

__all__ = ["TASKS", "FactorError", "FactorResult", "build_factors", "format_summary", "load_track_targets"]
