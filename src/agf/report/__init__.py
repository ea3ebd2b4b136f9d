"""The report: results.csv, the paper's Tables 3-5, Figure 3, the dataset section and report.html."""

from agf.report.build import ReportImages, build_report
from agf.report.dataset import dataset_section, dataset_tables
from agf.report.figures import figure3
from agf.report.results import (
    RESULTS_COLUMNS,
    read_results_csv,
    validate_results,
    write_results_csv,
)
from agf.report.tables import table3, table4, table5

__all__ = [
    "RESULTS_COLUMNS",
    "ReportImages",
    "build_report",
    "dataset_section",
    "dataset_tables",
    "figure3",
    "read_results_csv",
    "table3",
    "table4",
    "table5",
    "validate_results",
    "write_results_csv",
]
