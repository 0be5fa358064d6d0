"""Measuring retrieval: the evaluation harness (Self-Retrieval against BM25 and reranked BM25),
its metrics and reports, and the quickstart, which trains on the bundled corpus and shows the
result."""

from .harness import EvaluationConfig, evaluate
from .quickstart import run_quickstart
from .report import format_table, report_console, write_report

__all__ = [
    "EvaluationConfig",
    "evaluate",
    "format_table",
    "report_console",
    "run_quickstart",
    "write_report",
]
