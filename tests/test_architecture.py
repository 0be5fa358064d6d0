"""The dependency rules of docs/architecture.md, checked on the code's own imports.

Every import counts, also those inside functions (lazy imports are still dependencies).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "selfretrieval_integrations"
NAME = "selfretrieval_integrations"

#: The layers, lowest first: a module may import its own room and any lower layer, never a higher
#: one. A "room" is a subpackage, or a top-level module.
LAYERS: list[set[str]] = [
    {"errors", "validation", "extras"},
    {"corpus", "base_models", "artifact", "training"},
    {"index"},
    {"retrieval"},
    {"evaluation"},
    {"framework_shared"},
    {"langchain", "llama_index"},
    {"cli"},
]
BRIDGE = "training"


def _modules() -> list[tuple[str, Path]]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules.append((".".join(parts), path))
    return modules


def _imports(module: str, path: Path) -> set[str]:
    """Absolute dotted names of everything ``path`` imports (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    here = [NAME, *module.split(".")] if module else [NAME]
    if not is_package:
        here = here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _layer(module: str) -> int | None:
    """The layer of ``module``: that of the most specific room it belongs to."""
    matches = [
        (len(room), rank)
        for rank, rooms in enumerate(LAYERS)
        for room in rooms
        if module == room or module.startswith(room + ".")
    ]
    return max(matches)[1] if matches else None


def test_only_the_bridge_imports_the_trainer() -> None:
    offenders = [
        module
        for module, path in _modules()
        if module != BRIDGE
        and any(name.split(".")[0] == "selfretrieval_trainer" for name in _imports(module, path))
    ]
    assert offenders == []


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda value: str(value))
def test_imports_run_down_the_layers(module: str, path: Path) -> None:
    if module == "":
        return  # the package's lazy front door re-exports every layer
    own = _layer(module)
    assert own is not None, f"{module} is in no layer of this test (add its room to LAYERS)"
    upward = []
    for name in _imports(module, path):
        if not name.startswith(NAME + "."):
            continue
        target = name[len(NAME) + 1 :]
        layer = _layer(target)
        if layer is not None and layer > own:
            upward.append(target)
    assert upward == [], f"{module} imports from higher layers"
