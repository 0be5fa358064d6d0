"""Files of an artifact: hard links for what a write leaves unchanged, and JSON."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfretrieval_integrations.errors import ArtifactError


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link a folder's files (instant, no extra disk), copying where links fail."""
    for item in source.rglob("*"):
        dest = target / item.relative_to(source)
        if item.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(item, dest)
        except OSError:
            shutil.copy2(item, dest)


def save_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def load_json(path: Path, what: str, check: Callable[[Any], bool] | None = None) -> Any:
    if not path.is_file():
        raise ArtifactError(f"{what} is missing: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{what} at {path} is not valid JSON: {error}") from error
    if check is not None and not check(data):
        raise ArtifactError(f"{what} at {path} has an unexpected shape")
    return data
