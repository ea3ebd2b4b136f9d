"""The report: the headline, results.csv, the paper's Tables 3-5, Figure 3, the dataset section, provenance and
report.html."""

from agf.report.build import Provenance, ReportImages, build_report
from agf.report.dataset import dataset_section, dataset_tables
from agf.report.figures import TrainingCurves, figure3
from agf.report.results import (
    RESULTS_COLUMNS,
    read_results_csv,
    validate_results,
    write_results_csv,
)
from agf.report.tables import Headline, headline, table3, table4, table5

__all__ = [
    "RESULTS_COLUMNS",
    "Headline",
    "Provenance",
    "ReportImages",
    "TrainingCurves",
    "build_report",
    "dataset_section",
    "dataset_tables",
    "figure3",
    "headline",
    "read_results_csv",
    "table3",
    "table4",
    "table5",
    "validate_results",
    "write_results_csv",
]
