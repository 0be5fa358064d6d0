"""Measuring retrieval: the evaluation harness (Self-Retrieval against BM25 and reranked BM25)
and the quickstart, which trains on the bundled corpus and shows the result."""

from .harness import EvaluationConfig, evaluate, format_table, report_console, write_report
from .quickstart import run_quickstart

__all__ = [
    "EvaluationConfig",
    "evaluate",
    "format_table",
    "report_console",
    "run_quickstart",
    "write_report",
]
