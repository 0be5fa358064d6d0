"""The evaluation harness: metrics against hand-computed values, the report, and the CLI."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from selfretrieval_integrations import SelfRetrievalModel
from selfretrieval_integrations.cli import app
from selfretrieval_integrations.corpus import (
    load_beir_qrels,
    load_beir_queries,
    load_corpus,
    quickstart_dir,
)
from selfretrieval_integrations.errors import QueryError
from selfretrieval_integrations.evaluation import EvaluationConfig, evaluate, write_report
from selfretrieval_integrations.evaluation.harness import select_questions
from selfretrieval_integrations.evaluation.metrics import metrics_and_tests
from selfretrieval_integrations.index import BM25Index, DenseIndex
from selfretrieval_integrations.retrieval import Fusion


def _by_hand(ranked: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    first = []
    for q, rel in qrels.items():
        first.append(next((i for i, d in enumerate(ranked[q], 1) if d in rel), None))

    def hits(n):
        return float(np.mean([f is not None and f <= n for f in first]))

    def mrr(n):
        return float(np.mean([1 / f if f is not None and f <= n else 0 for f in first]))

    return {"hits@1": hits(1), "hits@5": hits(5), "hits@10": hits(10), "mrr@5": mrr(5)}


def test_metrics_match_a_hand_computation_and_keep_our_order():
    qrels = {"a": {"d1": 1}, "b": {"d2": 1}, "c": {"d3": 1}, "d": {"d9": 1}}
    ranked = {
        "a": ["d1", "d2"],
        "b": ["d1", "d3", "d4", "d5", "d6", "d2"],  # rank 6: only in Hits@10
        "c": ["d4", "d3"],
        "d": [],  # nothing retrieved
    }
    other = {"a": ["d2", "d1"], "b": ["d2"], "c": ["d3"], "d": ["d9"]}
    metrics, tests = metrics_and_tests(qrels, {"x": ranked, "y": other}, "student")
    for name, run in (("x", ranked), ("y", other)):
        for metric, value in _by_hand(run, qrels).items():
            assert metrics[name][metric] == pytest.approx(value, abs=1e-4), (name, metric)
    pair = tests["x vs y"]["hits@1"]
    assert pair["wins_ties_losses"] == [1, 0, 3]  # x wins a, ties none, loses b c d
    assert 0 < pair["p_value"] <= 1


def test_question_sample_is_seeded_and_skips_unjudged():
    qrels = {f"q{i}": {"d": 1} for i in range(10)} | {"zero": {"d": 0}}
    assert "zero" not in select_questions(qrels, None, 0)
    first = select_questions(qrels, 4, seed=1)
    assert first == select_questions(qrels, 4, seed=1) and len(first) == 4
    assert first != select_questions(qrels, 4, seed=2)


def test_config_is_validated():
    for bad in (
        {"baseline": "vector"},
        {"baseline": ["bm25", "x"]},
        {"k": 0},
        {"rerank_depth": 0},
        {"max_questions": 0},
        {"stat_test": "x"},
        {"cache_megabytes": -1},
    ):
        with pytest.raises(ValueError):
            EvaluationConfig(**bad)


@pytest.fixture(scope="module")
def model(tiny_model):
    return SelfRetrievalModel.from_base(tiny_model, load_corpus(quickstart_dir()))


def test_report_has_every_system_and_bm25_matches_the_index(model, tmp_path):
    config = EvaluationConfig(baseline="bm25", max_questions=5, rerank_depth=4, keep_details=True)
    retrieval_config = model.config
    report = evaluate(model, quickstart_dir(), config, show_progress=False)
    assert model.config is retrieval_config  # other fusions never swap the model's config
    other_fusions = {f"self-retrieval/{f.value}" for f in Fusion if f is not model.config.fusion}
    assert set(report["systems"]) == {
        "self-retrieval",
        *other_fusions,
        "hybrid",
        "bm25",
        "bm25+self-reranker",
        "bm25+self-reranker/rrf",
        "bm25+self-reranker/assessment",
    }
    for row in report["systems"].values():
        assert all(0 <= row[m] <= 1 for m in ("hits@1", "hits@5", "mrr@5", "ndcg@10"))
        assert row["p50_ms"] > 0 and row["p95_ms"] >= row["p50_ms"]
    assert report["questions"] == 5 and "self-retrieval vs bm25" in report["significance"]
    # BM25 through the harness equals BM25 computed directly.
    qrels = load_beir_qrels(quickstart_dir(), "test")
    qids = select_questions(qrels, 5, 0)
    queries = load_beir_queries(quickstart_dir())
    passages = list(model.store)
    indices, _ = BM25Index(passages).search([queries[q] for q in qids], 10)
    ranked = {
        q: [passages[int(i)].doc_id for i in row] for q, row in zip(qids, indices, strict=True)
    }
    expected = _by_hand(ranked, {q: qrels[q] for q in qids})
    for metric, value in expected.items():
        assert report["systems"]["bm25"][metric] == pytest.approx(value, abs=1e-4)
    # The reranker only reorders BM25's top rerank_depth, so Hits@rerank_depth is unchanged.
    assert report["systems"]["bm25+self-reranker"]["hits@1"] <= report["systems"]["bm25"]["hits@5"]
    out = write_report(report, tmp_path / "r.json")
    saved = json.loads(out.read_text())
    assert saved["systems"] == report["systems"] and "details" not in saved
    details = [json.loads(line) for line in (tmp_path / "r.details.jsonl").open()]
    assert [d["question"] for d in details] == qids
    assert all(len(d["bm25"]) == 10 and d["self-retrieval"] for d in details)
    assert all(row["relevance"] is not None for d in details for row in d["bm25"][:4])
    assert (tmp_path / "r.png").stat().st_size > 0
    # The hybrid in the report is the model's own hybrid mode.
    hybrid = copy.copy(model)
    hybrid.config = replace(model.config, mode="hybrid")
    for qid, d in zip(qids, details, strict=True):
        got = [r.doc_id for r in hybrid.retrieve(queries[qid], k=10)]
        assert [row["id"] for row in d["hybrid"]] == got


def test_cache_size_is_the_evaluations_and_the_model_keeps_its_own(model):
    own = model.config
    cache = model.assessor.context_scorer.cache
    config = EvaluationConfig(hybrid=False, max_questions=2, variants=False, cache_megabytes=0)
    report = evaluate(model, quickstart_dir(), config, show_progress=False)
    assert report["config"]["assessment"]["cache_megabytes"] == 0
    assert report["config"]["cache_megabytes"] == 0
    assert model.config is own and cache.max_bytes == own.assessment.cache_megabytes << 20


def test_dense_baseline_and_its_reranker(model):
    config = EvaluationConfig(
        baseline=("dense",), hybrid=False, max_questions=4, rerank_depth=3, variants=False
    )
    report = evaluate(model, quickstart_dir(), config, show_progress=False)
    assert {"dense", "dense+self-reranker"} <= set(report["systems"])
    qrels = load_beir_qrels(quickstart_dir(), "test")
    qids = select_questions(qrels, 4, 0)
    queries = load_beir_queries(quickstart_dir())
    passages = list(model.store)
    indices, scores = DenseIndex(passages).search([queries[q] for q in qids], 10)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    ranked = {
        q: [passages[int(i)].doc_id for i in row] for q, row in zip(qids, indices, strict=True)
    }
    expected = _by_hand(ranked, {q: qrels[q] for q in qids})
    for metric, value in expected.items():
        assert report["systems"]["dense"][metric] == pytest.approx(value, abs=1e-4)


def test_split_without_questions_is_an_error(model, tmp_path):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\tnope\t0\n")
    with pytest.raises(QueryError, match="no question"):
        evaluate(model, folder, show_progress=False)


def test_cli_evaluate_writes_json_and_plot(model, tmp_path):
    artifact = tmp_path / "artifact"
    model.save_pretrained(artifact)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(artifact),
            "--data",
            str(quickstart_dir()),
            "--baseline",
            "bm25",
            "dense",
            "--no-hybrid",
            "--questions",
            "3",
            "--rerank-depth",
            "3",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["questions"] == 3 and "bm25+self-reranker" in report["systems"]
    assert "dense+self-reranker" in report["systems"] and "hybrid" not in report["systems"]
    assert out.with_suffix(".png").is_file()
    assert "Hits@1 p =" in result.output
    bad = CliRunner().invoke(
        app, ["evaluate", str(artifact), "--data", str(quickstart_dir()), "--baseline", "x"]
    )
    assert bad.exit_code == 2 and "unknown baseline" in bad.output
