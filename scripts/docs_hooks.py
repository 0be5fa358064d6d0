"""MkDocs hooks of the documentation site (``hooks:`` in mkdocs.yml).

- Every public module of ``selfretrieval_integrations`` and ``selfretrieval_trainer`` must have an
  API page (a ``::: module`` directive under ``docs/api/``); a module without one is a warning, so
  ``mkdocs build --strict`` fails instead of publishing an incomplete reference.
- ``<!-- cli-help: COMMAND -->`` in a page is replaced by that command's ``--help`` text, taken
  from the typer app itself, so the CLI reference cannot drift from the code.
- Every command of the CLI must have its ``<!-- cli-help: COMMAND -->`` in ``cli.md``.
- ``<!-- bench-results -->`` is replaced by tables made from ``benchmarks/results/*.json``, so the
  numbers shown are the numbers the benchmark scripts wrote.
- Sphinx roles left in docstrings (``:meth:`x```) are shown as plain code in the API pages.
- The files of the repository's ``benchmarks/`` folder (scripts, reports and plots under
  ``results/``) are published under ``benchmarks/``, so the relative links of the included
  ``RESULTS.md`` resolve.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.docs_hooks")

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "selfretrieval_integrations": ROOT / "selfretrieval_integrations",
    "selfretrieval_trainer": ROOT / "trainer",
}
DIRECTIVE = re.compile(r"^:::\s+([\w.]+)", re.MULTILINE)
CLI_MARKER = re.compile(r"<!--\s*cli-help:\s*([\w-]*)\s*-->")
SPHINX_ROLE = re.compile(r":(?:meth|func|class|attr|mod|data|obj|exc):(?=<code>)")
PUBLISHED_BENCHMARK_SUFFIXES = {".py", ".sh", ".json", ".jsonl", ".png"}


def public_modules() -> list[str]:
    """Dotted names of the modules that need an API page: every module and subpackage whose
    name does not start with ``_`` (a subpackage's page shows its docstring: what it holds)."""
    names = []
    for package, folder in PACKAGES.items():
        names.append(package)
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts and not any(part.startswith("_") for part in parts):
                names.append(".".join((package, *parts)))
    return names


def documented_objects(docs_dir: Path) -> set[str]:
    """Identifiers named by ``::: identifier`` directives in the API pages."""
    found: set[str] = set()
    for page in (docs_dir / "api").rglob("*.md"):
        found.update(DIRECTIVE.findall(page.read_text(encoding="utf-8")))
    return found


def on_files(files: Files, config: Any) -> Files:
    docs_dir = Path(config["docs_dir"])
    documented = documented_objects(docs_dir)
    for module in public_modules():
        package = module.split(".")[0]
        if module != package and module not in documented:
            log.warning(
                "the public module %s has no API page: add a page under docs/api/ with "
                "'::: %s' and list it in mkdocs.yml's nav",
                module,
                module,
            )
    benchmarks = ROOT / "benchmarks"
    for path in sorted(benchmarks.rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        if (
            path.is_file()
            and path.suffix in PUBLISHED_BENCHMARK_SUFFIXES
            and "__pycache__" not in path.parts
            and files.get_file_from_path(relative) is None
        ):
            files.append(
                File(
                    relative,
                    src_dir=str(ROOT),
                    dest_dir=config["site_dir"],
                    use_directory_urls=config["use_directory_urls"],
                    inclusion=_not_in_nav(),
                )
            )
    return files


def _not_in_nav() -> Any:
    from mkdocs.structure.files import InclusionLevel

    return InclusionLevel.NOT_IN_NAV


def cli_help(command: str) -> str:
    """The plain-text ``--help`` of ``selfretrieval [command]``."""
    from typer.testing import CliRunner

    from selfretrieval_integrations.cli import app

    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(
        app, args, prog_name="selfretrieval", env={"COLUMNS": "100", "NO_COLOR": "1"}
    )
    if result.exit_code != 0:
        raise RuntimeError(f"selfretrieval {' '.join(args)} failed: {result.output}")
    lines = [line.rstrip() for line in result.output.splitlines()]
    return "\n".join(lines).strip("\n")


def cli_commands() -> list[str]:
    import typer

    from selfretrieval_integrations.cli import app

    return list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    def replace(match: re.Match[str]) -> str:
        return f"```text\n{cli_help(match.group(1))}\n```"

    if page.file.src_uri == "cli.md":
        covered = set(CLI_MARKER.findall(markdown))
        for command in cli_commands():
            if command not in covered:
                log.warning(
                    "cli.md has no section for `selfretrieval %s`: add '<!-- cli-help: %s -->'",
                    command,
                    command,
                )
    markdown = CLI_MARKER.sub(replace, markdown)
    if BENCH_MARKER in markdown:
        markdown = markdown.replace(BENCH_MARKER, benchmark_tables())
    return markdown


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    return SPHINX_ROLE.sub("", html) if page.file.src_uri.startswith("api/") else html


# --------------------------------------------------------------------------------------------
# Tables from benchmarks/results/*.json
# --------------------------------------------------------------------------------------------

BENCH_MARKER = "<!-- bench-results -->"
RESULTS = ROOT / "benchmarks" / "results"


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}" if isinstance(value, (int, float)) else "–"


def _num(value: Any, digits: int = 0) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) else "–"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _retrieval_tables() -> str:
    rows = []
    for name in ("quickstart_zero_shot.json", "quickstart.json"):
        path = RESULTS / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        for system, m in data["systems"].items():
            if system == "bm25" and rows and rows[0][0] == "bm25":
                continue
            rows.append(
                [
                    system,
                    _pct(m.get("hits@1")),
                    _pct(m.get("hits@5")),
                    _pct(m.get("hits@10")),
                    _pct(m.get("mrr@10")),
                    _num(m.get("ms_per_query"), 1),
                    f"[{name}](results/{name})",
                ]
            )
    if not rows:
        return ""
    header = ["system", "Hits@1 %", "Hits@5 %", "Hits@10 %", "MRR@10 %", "ms/query", "file"]
    return (
        "### Retrieval on the bundled corpus\n\n"
        "SmolLM2-135M on the bundled corpus's test questions (`quickstart_eval.py`); "
        "`zero-shot` is the untrained base model, `trained` the quickstart artifact with each "
        "fusion method.\n\n" + _table(header, rows)
    )


def _updates_table() -> str:
    path = RESULTS / "updates.json"
    if not path.is_file():
        return ""
    steps = json.loads(path.read_text(encoding="utf-8"))["steps"]
    rows = []
    for step, label in (
        ("before", "before"),
        ("after_add", "after add"),
        ("after_delete", "after delete"),
    ):
        if step not in steps:
            continue
        data = steps[step]
        untouched, added = data.get("untouched", {}), data.get("added", {})
        rows.append(
            [
                label,
                _pct(untouched.get("hits@1")),
                _pct(untouched.get("hits@5")),
                _pct(added.get("hits@1")) if added else "–",
                _pct(added.get("hits@5")) if added else "–",
                _num(data.get("seconds"), 1) if "seconds" in data else "–",
            ]
        )
    header = [
        "step",
        "untouched Hits@1 %",
        "untouched Hits@5 %",
        "added Hits@1 %",
        "added Hits@5 %",
        "seconds",
    ]
    return (
        "### Incremental updates\n\n"
        "`updates_eval.py`: retrieval of untouched documents and of the added ones, before and "
        "after `add_documents` and `delete_documents` ([updates.json](results/updates.json)).\n\n"
        + _table(header, rows)
    )


def _decoding_tables() -> str:
    parts = []
    for name in ("decoding.json", "decoding_cuda_h200.json"):
        path = RESULTS / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        device = (
            data.get("machine", {}).get("gpu")
            or f"CPU ({data.get('machine', {}).get('cpu_count')} cores)"
        )
        rows = []
        for model, corpora in data["results"].items():
            for corpus, result in corpora.items():
                systems = result["systems"]
                naive, best = systems.get("naive", {}), systems.get("optimized", {})
                rows.append(
                    [
                        model,
                        corpus,
                        _num(naive.get("forward_passes_per_query"), 1),
                        _num(best.get("forward_passes_per_query"), 1),
                        _num(naive.get("ms_per_query_median"), 1),
                        _num(best.get("ms_per_query_median"), 1),
                        _num(systems.get("optimized-batch8", {}).get("ms_per_query_median"), 1),
                    ]
                )
        header = [
            "model",
            "corpus",
            "naive passes/query",
            "passes/query",
            "naive ms/query",
            "ms/query",
            "ms/query, batch 8",
        ]
        parts.append(f"{device} ([{name}](results/{name})):\n\n" + _table(header, rows))
    if not parts:
        return ""
    return (
        "### Constrained decoding\n\n"
        "`decoding_bench.py`: forward passes and median latency per query of the decoder against a "
        "token-by-token dict-trie baseline (`naive`), with identical results.\n\n"
        + "\n\n".join(parts)
    )


def _trie_table() -> str:
    path = RESULTS / "trie.json"
    if not path.is_file():
        return ""
    data = json.loads(path.read_text(encoding="utf-8"))
    trie = data["trie"]
    lookup = trie.get("next_tokens_mmap", {})
    medians = [v["median_us"] for v in lookup.values() if isinstance(v, dict) and "median_us" in v]
    rows = [
        ["passages", _num(data.get("n_passages"))],
        ["structure size (MB)", _num(trie.get("structure_bytes", 0) / 1e6, 1)],
        ["size on disk (MB)", _num(trie.get("disk_bytes", 0) / 1e6, 1)],
        ["build (s)", _num(trie.get("build_flat_s"), 1)],
        ["load, memory-mapped (ms)", _num(1000 * trie.get("load_s", 0), 1)],
        ["next-token look-up, median (µs)", _num(max(medians), 1) if medians else "–"],
        [
            "memory against a nested-dict trie of the same cut keys",
            f"{data.get('memory_ratio_vs_dict', 0):.0f}× smaller",
        ],
    ]
    return (
        "### Trie\n\n"
        "`trie_bench.py` on 1,000,000 synthetic passages ([trie.json](results/trie.json)); the "
        "look-up figure is the slowest median over prefix depths.\n\n" + _table(["", "value"], rows)
    )


def benchmark_tables() -> str:
    makers: list[Callable[[], str]] = [
        _retrieval_tables,
        _updates_table,
        _decoding_tables,
        _trie_table,
    ]
    parts = []
    for make in makers:
        try:
            text = make()
        except (KeyError, TypeError, ValueError) as error:
            log.warning("benchmark table %s failed on the current JSON: %r", make.__name__, error)
            continue
        if text:
            parts.append(text)
    return "\n\n".join(parts)
