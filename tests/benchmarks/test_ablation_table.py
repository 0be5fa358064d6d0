"""``ablations.py table`` reads each fusion from the right key, whatever the report's default.

Reports written while ``paper`` was the default fusion store it as ``self-retrieval`` and
``logprob`` as ``self-retrieval/logprob``; later reports store them the other way round. The
merged table must show the same fusion in the same column for both.
"""

from __future__ import annotations

import json
from pathlib import Path

from .scripts import load_benchmark

ablations = load_benchmark("ablations")


def _metrics(hits1: float) -> dict[str, float]:
    return {"hits@1": hits1, "hits@5": 0.5, "hits@10": 0.9, "mrr@5": 0.25}


def _report(path: Path, name: str, systems: dict[str, dict[str, float]]) -> Path:
    row = {"train_seconds": 12.3, "training": {"tokens_per_second": 150.4}, "systems": systems}
    path.write_text(json.dumps({"variants": {name: row}}), encoding="utf-8")
    return path


def test_table_reads_each_fusion_from_old_and_new_reports(tmp_path: Path) -> None:
    old = _report(
        tmp_path / "old.json",
        "old-variant",
        {
            "self-retrieval": _metrics(0.11),  # paper was the default
            "self-retrieval/logprob": _metrics(0.22),
            "self-retrieval/generation": _metrics(0.33),
        },
    )
    new = _report(
        tmp_path / "new.json",
        "new-variant",
        {
            "self-retrieval": _metrics(0.44),  # logprob is the default
            "self-retrieval/paper": _metrics(0.55),
            "self-retrieval/generation": _metrics(0.66),
        },
    )

    lines = ablations.training_table([old, new]).splitlines()

    assert len(lines) == 4
    assert lines[2].startswith("| old-variant | 12 | 150 | 0.22 / 0.11 / 0.33 |")
    assert lines[3].startswith("| new-variant | 12 | 150 | 0.44 / 0.55 / 0.66 |")
    assert lines[3].endswith("| `new.json` |")
