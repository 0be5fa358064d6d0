"""Reading JSON-lines files (corpora, passages, queries) with one kind of error per mistake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from selfretrieval_integrations.errors import CorpusError

#: Files of at least this many lines show a progress bar while they are read.
PROGRESS_MIN_ITEMS = 10_000


def count_lines(file: Path) -> int:
    """Count lines in binary blocks: sizes the progress bar and decides whether to show one."""
    count = 0
    last = b"\n"
    with file.open("rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def read_json_lines(file: Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line, with clear errors for bad lines.

    ``what`` describes one valid line for the messages. A byte-order mark is allowed.
    """
    total = count_lines(file)
    with (
        file.open(encoding="utf-8-sig") as handle,
        tqdm(
            total=total,
            desc=f"reading {file.name}",
            unit=" lines",
            disable=total < PROGRESS_MIN_ITEMS,
        ) as progress,
    ):
        try:
            for line_number, line in enumerate(handle, start=1):
                progress.update(1)
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(
                        f"{file}, line {line_number}: not valid JSON ({exc.msg} at column "
                        f"{exc.colno}); each line must be one JSON object, {what}."
                    ) from exc
                if not isinstance(data, dict):
                    raise CorpusError(
                        f"{file}, line {line_number}: expected a JSON object, got "
                        f"{type(data).__name__}; each line must be {what}."
                    )
                yield line_number, data
        except UnicodeDecodeError as exc:
            raise CorpusError(
                f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8."
            ) from exc
