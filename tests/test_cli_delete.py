"""``selfretrieval delete``: ids as the README writes them, repeated, or from a file."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from selfretrieval_integrations import Passage, RetrievalConfig, SelfRetrievalModel
from selfretrieval_integrations.cli import app
from selfretrieval_integrations.retrieval import Fusion


@pytest.fixture
def artifact(tiny_model, tmp_path):
    passages = [Passage(id=f"p{i}", doc_id=f"d{i}", title="", text=f"Fact {i}.") for i in range(8)]
    model = SelfRetrievalModel.from_base(
        tiny_model, passages, config=RetrievalConfig(fusion=Fusion.GENERATION)
    )
    return model.save_pretrained(tmp_path / "art")


def _doc_ids(path):
    return {p.doc_id for p in SelfRetrievalModel.from_pretrained(path).store}


@pytest.mark.parametrize(
    "args",
    [["--ids", "d1", "d2", "d3"], ["--ids", "d1", "--ids", "d2", "--ids", "d3"]],
    ids=["--ids a b c", "repeated --ids"],
)
def test_ids_as_documented(artifact, args):
    result = CliRunner().invoke(app, ["delete", str(artifact), *args])
    assert result.exit_code == 0, result.output
    assert "removed 3 passage(s)" in result.output
    assert _doc_ids(artifact) == {f"d{i}" for i in (0, 4, 5, 6, 7)}


def test_ids_file(artifact, tmp_path):
    listed = tmp_path / "ids.txt"
    listed.write_text("d4\n\n  d5  \n")
    result = CliRunner().invoke(app, ["delete", str(artifact), "--ids-file", str(listed)])
    assert result.exit_code == 0, result.output
    assert _doc_ids(artifact) == {f"d{i}" for i in (0, 1, 2, 3, 6, 7)}


def test_no_ids_or_stray_arguments_are_refused(artifact):
    for args in ([], ["d1"]):
        result = CliRunner().invoke(app, ["delete", str(artifact), *args])
        assert result.exit_code == 2
        assert "--ids" in result.output
    assert len(_doc_ids(artifact)) == 8
