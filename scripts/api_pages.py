"""Writes the API reference pages and their navigation from the packages' own layout.

One page per public module (``docs/api/<subpackage>/<module>.md`` holding ``::: dotted.name``),
one per subpackage (``.../index.md``, its docstring and what it re-exports), the module tables of
``docs/api/index.md`` (each row the first sentence of the module's docstring), and the
"API reference" block of ``mkdocs.yml``. Rerun it after moving or adding a module::

    .venv/bin/python scripts/api_pages.py

``mkdocs build --strict`` fails on a public module without a page (``scripts/docs_hooks.py``), so
a forgotten rerun is caught.
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from docs_hooks import PACKAGES, public_modules  # noqa: E402

API = ROOT / "docs" / "api"
#: Page folder of each package under docs/api/ (the library's pages sit at the top).
FOLDERS = {"selfretrieval_integrations": "", "selfretrieval_trainer": "trainer"}
TABLES_START = "<!-- api-tables -->"
NAV_START, NAV_END = "  - API reference:\n", "  - Benchmarks:"


def source_of(module: str) -> Path:
    package, *parts = module.split(".")
    base = PACKAGES[package].joinpath(*parts)
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def is_package(module: str) -> bool:
    return source_of(module).name == "__init__.py"


def summary(module: str) -> str:
    """The first sentence of the module's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(source_of(module).read_text(encoding="utf-8"))) or ""
    text = " ".join(doc.split())
    match = re.match(r"(.+?\.)(\s|$)", text)
    return (match.group(1) if match else text).rstrip(".").replace("|", "\\|")


def page_of(module: str) -> str:
    """The page's path under docs/api/."""
    package, *parts = module.split(".")
    folder = [FOLDERS[package]] if FOLDERS[package] else []
    if not parts:
        return "/".join([*folder, "index.md"]) if folder else f"{package}.md"
    if is_package(module):
        return "/".join([*folder, *parts, "index.md"])
    return "/".join([*folder, *parts]) + ".md"


def page_text(module: str) -> str:
    if is_package(module):
        # The package page shows its docstring; its names are documented where they are defined.
        return f"::: {module}\n    options:\n      members: false\n"
    return f"::: {module}\n"


def nav(modules: list[str]) -> str:
    lines = [NAV_START, "      - api/index.md\n"]
    for package in PACKAGES:
        lines.append(f"      - {package}:\n")
        lines.append(f"          - api/{page_of(package)}\n")
        own = [m for m in modules if m.split(".")[0] == package and m != package]
        for module in own:
            depth = module.count(".")  # 1: top-level module or subpackage, 2: inside one
            parent = module.rsplit(".", 1)[0]
            if depth > 1 and parent not in own:
                raise SystemExit(f"{module}: nested deeper than one subpackage")
            indent = "          " + "    " * (depth - 1)
            name = module.rsplit(".", 1)[1]
            if is_package(module):
                lines.append(f"{indent}- {name}:\n{indent}    - api/{page_of(module)}\n")
            else:
                lines.append(f"{indent}- {name}: api/{page_of(module)}\n")
    return "".join(lines)


def tables(modules: list[str]) -> str:
    out = [TABLES_START, ""]
    for package in PACKAGES:
        out += [f"## {package}", "", "| module | what it holds |", "|---|---|"]
        for module in modules:
            if module.split(".")[0] == package:
                out.append(f"| [{module}]({page_of(module)}) | {summary(module)} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    modules = public_modules()
    for path in API.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != "index.md":
            path.unlink()
    for module in modules:
        page = API / page_of(module)
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(page_text(module), encoding="utf-8")
    index = API / "index.md"
    head = index.read_text(encoding="utf-8").split(TABLES_START)[0]
    index.write_text(head + tables(modules), encoding="utf-8")
    mkdocs = ROOT / "mkdocs.yml"
    text = mkdocs.read_text(encoding="utf-8")
    start, end = text.index(NAV_START), text.index(NAV_END)
    mkdocs.write_text(text[:start] + nav(modules) + text[end:], encoding="utf-8")
    print(f"wrote {len(modules)} API pages under {API.relative_to(ROOT)} and mkdocs.yml's nav")


if __name__ == "__main__":
    main()
