import json

import pytest

from .scripts import load_benchmark

targets = load_benchmark("quality_targets")


def _report(hits1: dict[str, float], mrr5: dict[str, float], p: float, evaluate_s: float):
    systems = {name: {"hits@1": v, "mrr@5": mrr5.get(name, v)} for name, v in hits1.items()}
    tests = {"bm25 vs bm25+self-reranker": {"hits@1": {"p_value": p}, "mrr@5": {"p_value": p}}}
    return {
        "systems": systems,
        "significance": tests,
        "config": {
            "train_seconds": 100.0,
            "train_seconds_from": "this run: loading, training, saving and the fusion fit",
            "evaluate_seconds": evaluate_s,
        },
    }


QUESTION = {
    "bm25": 0.80,
    "dense": 0.68,
    "self-retrieval": 0.70,
    "hybrid": 0.85,
    "bm25+self-reranker": 0.90,
    "dense+self-reranker": 0.88,
}
PARAGRAPH = {
    "bm25": 0.80,
    "self-retrieval": 0.50,
    "self-retrieval/generation": 0.20,
    "bm25+self-reranker": 0.79,
}


def _met(rows):
    return {row["target"]: row["met"] for row in rows}


def test_bounds_are_inclusive_where_the_issue_says_at_least():
    rows = _met(targets.question_targets(_report(QUESTION, {}, 0.01, 1.0)))
    assert rows["hybrid Hits@1 at least BM25 + 0.05"] is True  # 0.85 == 0.80 + 0.05
    assert all(rows.values())
    paragraph = _met(targets.paragraph_targets(_report(PARAGRAPH, {}, 0.5, 1.0)))
    assert paragraph["BM25 + SelfReranker Hits@1 at least BM25 - 0.01"] is True  # 0.79


def test_misses_and_missing_systems_are_reported_not_passed():
    worse = QUESTION | {"self-retrieval": 0.68}  # equal to dense is not above it
    rows = _met(targets.question_targets(_report(worse, {}, 0.2, 1.0)))
    assert rows["Self-Retrieval Hits@1 above dense"] is False
    assert rows["BM25 + SelfReranker hits@1 p < 0.05"] is False
    without_dense = {k: v for k, v in QUESTION.items() if not k.startswith("dense")}
    rows = _met(targets.question_targets(_report(without_dense, {}, 0.01, 1.0)))
    assert rows["dense + SelfReranker Hits@1 above dense"] is None


def test_whole_run_time_takes_the_training_log_over_the_trainers_own_time(tmp_path):
    report = _report(QUESTION, {}, 0.01, 1000.0)
    assert targets.time_target(report, None)["value"] == 1100.0
    report["config"]["train_seconds_from"] = "the artifact's manifest: the trainer alone"
    assert targets.time_target(report, None)["met"] is None, "the fit is not in that time"
    log = tmp_path / "train.log"
    log.write_text("step 1\ntrained in 6300 s: runs/x/model\n")
    row = targets.time_target(report, log)
    assert row["value"] == 7300.0 and row["met"] is False
    log.write_text("still training\n")
    with pytest.raises(SystemExit, match="trained in"):
        targets.time_target(report, log)


def test_cli_writes_the_verdict_and_fails_when_a_target_is_missed(tmp_path):
    question, paragraph = tmp_path / "q.json", tmp_path / "p.json"
    question.write_text(json.dumps(_report(QUESTION, {}, 0.01, 1000.0)))
    paragraph.write_text(json.dumps(_report(PARAGRAPH, {}, 0.5, 1000.0)))
    out = tmp_path / "targets.json"
    argv = ["--question-split", str(question), "--paragraph-split", str(paragraph)]
    assert targets.main([*argv, "--output", str(out)]) == 0
    assert json.loads(out.read_text())["all_met"] is True
    paragraph.write_text(json.dumps(_report(PARAGRAPH | {"bm25+self-reranker": 0.7}, {}, 0.5, 1)))
    assert targets.main(argv) == 1
