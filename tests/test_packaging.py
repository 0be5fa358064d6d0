"""The hand-written package list in pyproject.toml covers every package folder (and the data)."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _import_name(folder: Path, package_dir: dict[str, str]) -> str:
    rel = folder.relative_to(ROOT).parts
    for name, source in package_dir.items():
        if rel[: len(Path(source).parts)] == Path(source).parts:
            return ".".join((name, *rel[len(Path(source).parts) :]))
    raise AssertionError(f"{folder} is outside every package-dir mapping")


def test_every_package_folder_is_listed() -> None:
    config = _setuptools_config()
    package_dir = config["package-dir"]
    found = set()
    for source in package_dir.values():
        for init in (ROOT / source).rglob("__init__.py"):
            found.add(_import_name(init.parent, package_dir))
    listed = set(config["packages"])
    assert found - listed == set(), "packages missing from pyproject.toml"
    stale = {p for p in listed - found if not p.startswith("selfretrieval_integrations.data")}
    assert stale == set(), "pyproject.toml lists packages that no longer exist"


def test_bundled_data_files_are_packaged() -> None:
    config = _setuptools_config()
    data_root = ROOT / "selfretrieval_integrations" / "data"
    for path in data_root.rglob("*"):
        if not path.is_file():
            continue
        package = ".".join(("selfretrieval_integrations", *path.parent.relative_to(ROOT).parts[1:]))
        patterns = config["package-data"].get(package, [])
        assert package in config["packages"], f"{path} is in no listed package"
        assert any(path.match(p) for p in patterns), f"{path} matches no package-data pattern"
