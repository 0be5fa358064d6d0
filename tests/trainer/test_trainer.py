"""Training, resume after SIGKILL, incremental updates and the CLI, on the tiny random model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from selfretrieval_trainer.train import TrainingConfig, TrainingError, train
from selfretrieval_trainer.updates import add_documents, delete_documents
from typer.testing import CliRunner

from selfretrieval_integrations import Corpus, CorpusError, Document, SelfRetrievalModel
from selfretrieval_integrations.artifact import read_manifest
from selfretrieval_integrations.cli import app
from selfretrieval_integrations.corpus import (
    load_beir_qrels,
    load_beir_queries,
    load_beir_query_metadata,
    load_corpus,
    quickstart_dir,
)
from selfretrieval_integrations.index import BM25Index

from .helpers import DOCS, FAST


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "artifact"
    model = train("tiny", DOCS, out, config=FAST, show_progress=False, device="cpu")
    return out, model


def test_indexing_only_training_writes_a_loadable_artifact(trained):
    out, model = trained
    summary = read_manifest(out)["training"]
    for key in (
        "examples",
        "tokens_trained",
        "tokens_per_second",
        "final_loss",
        "padding_fraction",
    ):
        assert summary[key] is not None, key
    assert summary["examples"] > 0 and summary["tokens_trained"] > 0
    assert read_manifest(out)["weights"] == "lora"
    loaded = SelfRetrievalModel.from_pretrained(out, device="cpu", dtype="float32")
    assert [r.passage_id for r in loaded.retrieve("item", k=3)] == [
        r.passage_id for r in model.retrieve("item", k=3)
    ]


def test_training_with_queries_and_low_padding(tmp_path):
    folder = quickstart_dir()
    corpus = Corpus.from_passages(list(load_corpus(folder))[:12])  # the first 12 paragraphs
    docs = set(corpus.doc_ids())
    qrels = {q: r for q, r in load_beir_qrels(folder, "train").items() if set(r) <= docs}
    answers = {q: m["answers"] for q, m in load_beir_query_metadata(folder).items()}
    config = TrainingConfig(epochs=1, batch_size=4, save_steps=1000)
    model = train(
        "tiny",
        corpus,
        tmp_path / "a",
        queries=load_beir_queries(folder),
        qrels=qrels,
        answers=answers,
        config=config,
        show_progress=False,
    )
    summary = model.manifest["training"]
    assert summary["example_kinds"]["supervised"] > 0
    assert summary["example_kinds"]["assessment_negative"] > 0
    assert summary["padding_fraction"] <= 0.10


def test_training_is_deterministic(tmp_path):
    weights = []
    for name in ("a", "b"):
        model = train("tiny", DOCS[:3], tmp_path / name, config=FAST, show_progress=False)
        weights.append({k: v.clone() for k, v in model.model.state_dict().items()})
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_one_passage_corpus_and_full_finetune(tmp_path):
    config = TrainingConfig(epochs=1, full_finetune=True, save_steps=1000)
    model = train("tiny", DOCS[:1], tmp_path / "one", config=config, show_progress=False)
    assert [r.passage_id for r in model.retrieve("anything", k=5)] == ["doc0#0"]
    manifest = read_manifest(tmp_path / "one")
    assert manifest["weights"] == "full"


def test_unknown_qrels_ids_are_listed(tmp_path):
    with pytest.raises(CorpusError, match="nope"):
        train(
            "tiny",
            DOCS,
            tmp_path / "x",
            queries={"q": "question"},
            qrels={"q": {"nope": 1}},
            config=FAST,
            show_progress=False,
        )
    assert not (tmp_path / "x").exists()


def test_out_of_memory_gives_a_hint(tmp_path, monkeypatch):
    from transformers import Trainer

    def boom(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "train", boom)
    with pytest.raises(TrainingError, match="gradient checkpointing"):
        train("tiny", DOCS, tmp_path / "oom", config=FAST, show_progress=False)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from selfretrieval_integrations import Document
    from selfretrieval_trainer.train import TrainingConfig, train
    docs = [Document(id=f"d{i}", title=f"T{i}", text=f"Sentence {i} about topic {i}. Another one.")
            for i in range(20)]
    config = TrainingConfig(epochs=float(sys.argv[2]), batch_size=2, save_steps=2,
                            keep_checkpoints=True)
    model = train("tiny", docs, sys.argv[1], config=config, show_progress=False)
    print("RESUMED", model.manifest["training"]["resumed_from"])
    """
)


def test_sigkill_resumes_and_keeps_previous_artifact(trained, tmp_path):
    out = tmp_path / "artifact"
    previous, _ = trained
    import shutil

    shutil.copytree(previous, out)
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    checkpoints = tmp_path / "artifact.checkpoints"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(list(checkpoints.glob("checkpoint-*"))) >= 1:
            time.sleep(1.0)
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The previous artifact is intact and loadable; nothing half-written replaced it.
    assert SelfRetrievalModel.from_pretrained(out).retrieve("item", k=1)
    assert list(checkpoints.glob("checkpoint-*"))
    done = subprocess.run(
        [sys.executable, str(script), str(out), "8"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "RESUMED checkpoint-" in done.stdout
    assert len(SelfRetrievalModel.from_pretrained(out).store) == 20


def test_add_and_delete_documents(trained, tmp_path):
    import shutil

    out = tmp_path / "artifact"
    shutil.copytree(trained[0], out)
    new = [Document(id="new1", title="Novel", text="A brand new fact about comets.")]
    model = add_documents(out, new, config=FAST, show_progress=False)
    assert len(model.store) == len(DOCS) + 1
    found = model.retrieve("comets", k=1, filter={"doc_id": "new1"})
    assert [r.passage_id for r in found] == ["new1#0"]
    loaded = SelfRetrievalModel.from_pretrained(out)
    assert len(loaded.store) == len(DOCS) + 1
    assert loaded.manifest["history"][-1]["operation"] == "add"
    with pytest.raises(CorpusError, match="already"):
        add_documents(out, new, config=FAST, show_progress=False)

    removed = delete_documents(out, ["doc0", "new1"])
    assert removed == 2
    after = SelfRetrievalModel.from_pretrained(out)
    ids = {r.passage_id for r in after.retrieve("anything", k=100)}
    assert ids == {f"doc{i}#0" for i in range(1, 6)}
    with pytest.raises(CorpusError, match="missing-id"):
        delete_documents(out, ["missing-id"])
    with pytest.raises(CorpusError, match="empty"):
        delete_documents(out, [f"doc{i}" for i in range(1, 6)])


def test_a_loaded_models_add_is_seen_by_its_next_query_and_after_refresh(trained, tmp_path):
    import shutil

    out = tmp_path / "artifact"
    shutil.copytree(trained[0], out)
    model = SelfRetrievalModel.from_pretrained(out)
    other = SelfRetrievalModel.from_pretrained(out)
    new = [Document(id="new2", title="Novel", text="Another new fact about tides.")]
    assert model.add_documents(new, config=FAST, show_progress=False) == 1
    assert model.generation == other.generation + 1
    assert model.retrieve("tides", k=1, filter={"doc_id": "new2"})
    assert other.refresh() is True  # new weights too: reloaded whole
    assert other.retrieve("tides", k=1, filter={"doc_id": "new2"})
    assert other.model is not model.model


def test_cli_train_search_info_delete(tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"id": d.id, "title": d.title, "text": d.text}) for d in DOCS)
    )
    out = tmp_path / "cli-artifact"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            "--corpus",
            str(corpus),
            "--out",
            str(out),
            "--base-model",
            "tiny",
            "--epochs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["search", str(out), "item seven", "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 2
    assert {"passage_id", "doc_id", "title", "text", "score"} <= set(rows[0])
    result = runner.invoke(app, ["search", str(out), "item seven", "-k", "2"])
    assert result.exit_code == 0 and "rank" in result.output
    result = runner.invoke(app, ["info", str(out)])
    assert result.exit_code == 0 and json.loads(result.output)["n_passages"] == len(DOCS)
    result = runner.invoke(app, ["delete", str(out), "--ids", "doc1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["search", str(out), "   "])
    assert result.exit_code == 2 and "empty" in result.output
    result = runner.invoke(app, ["search", str(tmp_path / "nowhere"), "q"])
    assert result.exit_code == 2 and "no artifact" in result.output


def test_quickstart_runs_end_to_end_on_the_tiny_model(tmp_path):
    from rich.console import Console

    from selfretrieval_integrations.evaluation import run_quickstart

    shown = run_quickstart(
        tmp_path / "qs", base_model="tiny", epochs=0.1, questions=2, console=Console(quiet=True)
    )
    assert len(shown["questions"]) == 2
    test_qrels = load_beir_qrels(quickstart_dir(), "test")
    queries = load_beir_queries(quickstart_dir())
    passages = list(load_corpus(quickstart_dir()))
    qids = sorted(test_qrels)
    top = BM25Index(passages).search([queries[q] for q in qids], 1)[0][:, 0]
    bm25 = sum(passages[int(i)].doc_id in test_qrels[q] for q, i in zip(qids, top, strict=True))
    mode = SelfRetrievalModel.from_pretrained(tmp_path / "qs").config.mode.value
    assert shown["hits@1"]["BM25"] == bm25 / len(qids)
    assert next(iter(shown["hits@1"])) == f"Self-Retrieval ({mode})"  # the artifact's own first
    assert all(0 <= shown["hits@1"][f"Self-Retrieval ({m})"] <= 1 for m in ("self", "hybrid"))
    for row in shown["questions"]:
        assert len(row["retrieved"]) == 3 and row["relevant_bm25_rank"] >= 1
    assert SelfRetrievalModel.from_pretrained(tmp_path / "qs").retrieve("oxygen", k=1)


def test_incomplete_checkpoint_is_skipped(tmp_path):
    from selfretrieval_trainer.train import _last_checkpoint

    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text('{"trunc')
    (tmp_path / "checkpoint-6").mkdir()  # killed before trainer_state.json was written
    assert _last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert _last_checkpoint(tmp_path / "missing") is None


def test_cli_train_fits_fusion_on_held_out_questions_and_search_modes(tmp_path):
    out = tmp_path / "fitted"
    runner = CliRunner()
    folder = str(quickstart_dir())
    args = ["train", "--corpus", folder, "--qrels", folder, "--out", str(out)]
    tiny = [*args, "--base-model", "tiny", "--epochs", "0.2", "--lora"]
    result = runner.invoke(app, [*tiny, "--generation-tokens", "40"])
    assert result.exit_code == 2 and "fusion_generation_tokens" in result.output
    assert not out.exists(), "a bad choice fails before training"
    result = runner.invoke(app, [*tiny, "--generation-tokens", "16"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest["weights"] == "lora"
    assert manifest["training"]["config"]["fusion_generation_tokens"] == [16]
    hybrid = manifest["retrieval_config"]["hybrid"]
    assert hybrid["generation_tokens"] == 16, "the only length offered to the fit"
    held_out = int(len(load_beir_qrels(folder, "train")) * 0.2)
    assert hybrid["fitted"]["questions"] == held_out
    assert manifest["history"][-1]["operation"] == "fit-fusion"
    for mode in ("self", "hybrid"):
        result = runner.invoke(app, ["search", str(out), "apollo", "--mode", mode, "--json"])
        assert result.exit_code == 0, result.output
        assert (json.loads(result.output)[0]["bm25_score"] is None) == (mode == "self")
    result = runner.invoke(app, ["fit-fusion", str(out), "--data", folder, "--split", "test"])
    assert result.exit_code == 0 and "fitted on" in result.output, result.output
    assert read_manifest(out)["retrieval_config"]["hybrid"]["fitted"]["questions"] > held_out
    refit = [*("fit-fusion", str(out), "--data", folder, "--split", "train", "--held-out")]
    result = runner.invoke(app, [*refit, "--relevance-scale", "probability"])
    assert result.exit_code == 0, result.output
    hybrid = read_manifest(out)["retrieval_config"]["hybrid"]
    assert hybrid["fitted"]["questions"] == held_out  # the same questions training held out
    assert hybrid["relevance_scale"] == "probability"
    result = runner.invoke(app, [*refit, "--relevance-scale", "log"])
    assert result.exit_code == 2 and "relevance_scale" in result.output
    assert manifest["retrieval_config"]["assessment"]["method"] == "query_likelihood"
    result = runner.invoke(app, [*refit, "--assessment", "refusal"])
    assert result.exit_code == 0, result.output
    assert read_manifest(out)["retrieval_config"]["assessment"]["method"] == "refusal"
    result = runner.invoke(app, [*refit, "--assessment", "yes-no"])
    assert result.exit_code == 2 and "method" in result.output
    result = runner.invoke(app, [*refit, "--generation-tokens", "8"])
    assert result.exit_code == 0 and "8 generation tokens" in result.output, result.output
    assert read_manifest(out)["retrieval_config"]["hybrid"]["generation_tokens"] == 8
    result = runner.invoke(app, [*refit, "--generation-tokens", "0"])
    assert result.exit_code == 2 and "generation_tokens" in result.output
    bad = runner.invoke(app, ["search", str(out), "apollo", "--mode", "vector"])
    assert bad.exit_code == 2
