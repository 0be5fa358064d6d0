import json
import sys

from .scripts import load_benchmark

script = load_benchmark("unfitted_generation_length")


def test_trains_a_corpus_only_artifact_once_and_reports_each_length(tmp_path, monkeypatch):
    artifact, output = tmp_path / "artifact", tmp_path / "report.json"
    argv = ["x", "--artifact", str(artifact), "--base-model", "tiny", "--epochs", "1"]
    argv += ["--tokens", "4", "--output", str(output)]
    monkeypatch.setattr(sys, "argv", argv)
    script.main()
    first = json.loads(output.read_text())
    assert first["train_seconds"] > 0 and first["questions"] == 102
    assert list(first["results"]) == ["BM25", "hybrid, 4 generation tokens"]
    assert first["results"]["BM25"]["hits@1"] == 77 / 102  # bm25s on the bundled corpus
    assert all(0 <= row["hits@1"] <= 1 for row in first["results"].values())
    script.main()  # the artifact is there now: measured again, not retrained
    assert json.loads(output.read_text())["train_seconds"] is None
