"""The library reaches the trainer only through ``training.py``; deleting needs no trainer."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from typer.testing import CliRunner

from selfretrieval_integrations import Document, SelfRetrievalModel
from selfretrieval_integrations.cli import app
from selfretrieval_integrations.training import load_trainer

DOCS = [
    Document(id=f"d{i}", title=f"Topic {i}", text=f"Fact {i} is about item {i}.") for i in range(4)
]


def _without(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``names`` look uninstalled, and the trainer unimportable."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object, **kwargs: object) -> object:
        return None if name in names else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    for module in [m for m in sys.modules if m.split(".")[0] == "selfretrieval_trainer"]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "selfretrieval_trainer", None)


def test_the_bridge_names_the_missing_packages_and_the_extra(monkeypatch) -> None:
    _without(monkeypatch, "peft")
    with pytest.raises(ImportError, match=r"needs peft.*selfretrieval-integrations\[train\]"):
        load_trainer()


def test_cli_train_without_the_extra_fails_with_the_install_hint(monkeypatch, tmp_path) -> None:
    _without(monkeypatch, "peft", "accelerate")
    result = CliRunner().invoke(
        app, ["train", "--corpus", str(tmp_path), "--out", str(tmp_path / "a")]
    )
    assert result.exit_code == 2
    assert "selfretrieval-integrations[train]" in result.output


def test_cli_delete_works_without_the_trainer(monkeypatch, tmp_path, tiny_model) -> None:
    out = tmp_path / "artifact"
    SelfRetrievalModel.from_base(tiny_model, DOCS).save_pretrained(out)
    _without(monkeypatch, "peft", "accelerate")
    result = CliRunner().invoke(app, ["delete", str(out), "--ids", "d1"])
    assert result.exit_code == 0, result.output
    assert "removed 1 passage(s)" in result.output
    assert "selfretrieval_trainer" not in {m.split(".")[0] for m in sys.modules if sys.modules[m]}
    assert [p.doc_id for p in SelfRetrievalModel.from_pretrained(out).store] == ["d0", "d2", "d3"]
