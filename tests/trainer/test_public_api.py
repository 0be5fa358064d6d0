"""The trainer uses only the library's public API (docs/architecture.md), checked on its imports.

A name counts as public when its module lists it in ``__all__`` (or, without ``__all__``, when it
does not start with ``_``); no module on the way may be private either.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

TRAINER = Path(__file__).resolve().parents[2] / "trainer"
LIBRARY = "selfretrieval_integrations"


def _library_imports() -> list[tuple[str, str, str]]:
    """``(file, module, name)`` for every import from the library in the trainer."""
    found = []
    for path in sorted(TRAINER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                if node.module.split(".")[0] == LIBRARY:
                    found.extend((path.name, node.module, alias.name) for alias in node.names)
            elif isinstance(node, ast.Import):
                found.extend(
                    (path.name, alias.name, "")
                    for alias in node.names
                    if alias.name.split(".")[0] == LIBRARY
                )
    return found


@pytest.mark.parametrize(("file", "module", "name"), _library_imports(), ids=str)
def test_the_trainer_imports_public_names_only(file: str, module: str, name: str) -> None:
    assert not any(part.startswith("_") for part in module.split(".")), f"{file}: {module}"
    if not name:
        return
    loaded = importlib.import_module(module)
    public = getattr(loaded, "__all__", None)
    submodule = (
        hasattr(loaded, "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None
    )
    if public is not None:
        assert name in public or submodule, f"{file}: {module} does not list {name} in __all__"
    else:
        assert not name.startswith("_"), f"{file}: {module}.{name} is private"
