"""Running every system on the same questions: Self-Retrieval, BM25 and BM25 + SelfReranker.

Every system is measured on the same questions in the same run. Self-Retrieval is timed stage by
stage (constrained decoding, then self-assessment) so that the variants that drop a stage get
their own honest latency, computed from the same candidates instead of decoding twice: each
fusion ranks them with ``rank_candidates``, the function the model itself ranks with. Likewise
BM25's pool is assessed once and ordered by every rerank method with ``rerank_by_relevance``.
"""

from __future__ import annotations

import copy
import platform
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from selfretrieval_integrations.corpus import Passage, load_beir_qrels, load_beir_queries
from selfretrieval_integrations.errors import QueryError
from selfretrieval_integrations.index import BM25Index
from selfretrieval_integrations.retrieval import (
    Candidates,
    Fusion,
    RerankConfig,
    RerankMethod,
    SelfRetrievalModel,
    rank_candidates,
    rerank_by_relevance,
)
from selfretrieval_integrations.validation import checked_int

from .metrics import latency, metrics_and_tests

SELF_RETRIEVAL = "self-retrieval"
BM25 = "bm25"
RERANKED = "bm25+self-reranker"
BASELINES = (BM25,)


@dataclass(frozen=True)
class EvaluationConfig:
    """What ``evaluate`` measures (recorded in the report)."""

    split: str = "test"
    """The qrels split whose questions are evaluated."""
    baseline: str | None = None
    """``"bm25"`` adds BM25 and BM25 + SelfReranker over the same corpus and questions."""
    k: int = 10
    """Results per question (the metrics go to depth 10)."""
    self_reranker: bool = True
    """With a baseline, also rerank its candidates with self-assessment (the slow part)."""
    rerank_depth: int = 20
    """BM25 candidates given to the SelfReranker."""
    rerank: RerankConfig = field(default_factory=RerankConfig)
    """How the SelfReranker orders BM25's candidates."""
    max_questions: int | None = None
    """Evaluate a seeded sample of this many questions (None: all of the split)."""
    seed: int = 0
    """Seed of the question sample."""
    variants: bool = True
    """Also score ablations that reuse the same candidates: every fusion for Self-Retrieval and
    both rerank methods for the SelfReranker."""
    stat_test: str = "student"
    """ranx's paired test between systems: ``student`` (paired t-test) or ``fisher``."""
    keep_details: bool = False
    """Keep every question's candidates and their scores (``report["details"]``; saved beside
    the report by ``write_report``) so that other fusions can be studied without the model."""

    def __post_init__(self) -> None:
        if self.baseline is not None and self.baseline not in BASELINES:
            raise ValueError(f"unknown baseline {self.baseline!r}; choose from {BASELINES}")
        checked_int(self.k, "EvaluationConfig.k")
        checked_int(self.rerank_depth, "EvaluationConfig.rerank_depth")
        if self.max_questions is not None:
            checked_int(self.max_questions, "EvaluationConfig.max_questions")
        if self.stat_test not in ("student", "fisher"):
            raise ValueError(f"stat_test must be 'student' or 'fisher', got {self.stat_test!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rerank"]["method"] = self.rerank.method.value
        return data


@dataclass
class _SystemRun:
    """Ranked ids and latencies of one system, question by question."""

    ranked: dict[str, list[str]] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)


def select_questions(
    qrels: Mapping[str, Mapping[str, int]], max_questions: int | None, seed: int
) -> list[str]:
    """Question ids to evaluate: all with a relevant passage, or a seeded sample of them."""
    qids = sorted(q for q, rel in qrels.items() if any(v > 0 for v in rel.values()))
    if max_questions is not None and max_questions < len(qids):
        qids = sorted(random.Random(seed).sample(qids, max_questions))
    return qids


def _load_questions(
    data: Path, config: EvaluationConfig
) -> tuple[dict[str, str], dict[str, Mapping[str, int]]]:
    """The questions to evaluate and their qrels, both in question id order."""
    queries = load_beir_queries(data)
    qrels = load_beir_qrels(data, config.split)
    qids = select_questions(qrels, config.max_questions, config.seed)
    if not qids:
        raise QueryError(f"no question of split {config.split!r} in {data} has a relevant passage")
    missing = [q for q in qids if q not in queries]
    if missing:
        raise QueryError(
            f"{len(missing)} qrels questions are not in {data}/queries.jsonl, e.g. {missing[:5]}"
        )
    return {q: queries[q] for q in qids}, {q: qrels[q] for q in qids}


def _judged_id(passage_id: str, doc_id: str, qrel_ids: set[str]) -> str:
    """The id qrels use for a passage: its own id, or its document's."""
    return passage_id if passage_id in qrel_ids else doc_id


def _unique(ids: Iterable[str]) -> list[str]:
    """``ids`` in order without repeats (passages of one document count once)."""
    return list(dict.fromkeys(ids))


class _SelfRetrieval:
    """Self-Retrieval by every fusion, from one decode and at most one assessment per question."""

    def __init__(
        self, model: SelfRetrievalModel, config: EvaluationConfig, qrel_ids: set[str]
    ) -> None:
        main = model.config.fusion
        fusions = list(Fusion) if config.variants else [main]
        self.names = {
            f: SELF_RETRIEVAL if f is main else f"{SELF_RETRIEVAL}/{f.value}" for f in fusions
        }
        self.runs = {name: _SystemRun() for name in self.names.values()}
        self.model = model
        # The candidates are what the model decodes, ranked by generation alone: a shallow copy
        # (same weights, trie, store and lock) ranks that way, the evaluated model is not changed.
        self.by_generation = copy.copy(model)
        self.by_generation.config = replace(model.config, fusion=Fusion.GENERATION)
        self.k = config.k
        self.qrel_ids = qrel_ids

    def run(self, qid: str, question: str) -> list[dict[str, Any]]:
        """Rank ``question``'s candidates by every fusion; returns the candidates' scores."""
        started = time.perf_counter()
        results = self.by_generation.retrieve(question, k=self.k)
        decode_s = time.perf_counter() - started
        relevance = None
        assess_s = 0.0
        if results and any(f is not Fusion.GENERATION for f in self.names):
            started = time.perf_counter()
            relevance = self.model.assess(question, [(r.title, r.text) for r in results])
            assess_s = time.perf_counter() - started
        candidates = Candidates(
            passages=[self.model.store.index_of(r.passage_id) for r in results],
            titles=[r.title for r in results],
            title_logprobs=np.array([r.title_logprob for r in results]),
            logprobs=np.array([r.generation_logprob for r in results]),
            relevance=relevance,
        )
        ids = [_judged_id(r.passage_id, r.doc_id, self.qrel_ids) for r in results]
        for fusion, name in self.names.items():
            order, _ = rank_candidates(
                candidates, fusion, self.model.config.temperature, stable=True
            )
            self.runs[name].ranked[qid] = _unique(ids[i] for i in order)
            stages = decode_s if fusion is Fusion.GENERATION else decode_s + assess_s
            self.runs[name].seconds.append(stages)
        return [
            {
                "id": ids[i],
                "title_logprob": r.title_logprob,
                "logprob": r.generation_logprob,
                "relevance": None if relevance is None else float(relevance[i]),
                "title": r.title,
            }
            for i, r in enumerate(results)
        ]


class _BM25:
    """BM25, and its top ``rerank_depth`` assessed once and reordered by every rerank method."""

    def __init__(
        self, model: SelfRetrievalModel, config: EvaluationConfig, qrel_ids: set[str]
    ) -> None:
        main = config.rerank.method
        methods = list(RerankMethod) if config.variants else [main]
        self.names = {
            m: RERANKED if m is main else f"{RERANKED}/{m.value}"
            for m in (methods if config.self_reranker else [])
        }
        self.runs = {BM25: _SystemRun(), **{name: _SystemRun() for name in self.names.values()}}
        self.model = model
        self.passages = list(model.store)
        self.index = BM25Index(self.passages)
        self.config = config
        self.qrel_ids = qrel_ids

    def run(self, qid: str, question: str) -> list[dict[str, Any]]:
        """Rank ``question`` by BM25 and every reranker; returns the candidates' relevance."""
        k, depth = self.config.k, self.config.rerank_depth
        started = time.perf_counter()
        indices, _ = self.index.search([question], max(k, depth))
        bm25_s = time.perf_counter() - started
        found = [self.passages[int(i)] for i in indices[0] if int(i) >= 0]
        ids = [_judged_id(p.id, p.doc_id, self.qrel_ids) for p in found]
        self.runs[BM25].ranked[qid] = _unique(ids)[:k]
        self.runs[BM25].seconds.append(bm25_s)
        relevance = self._rerank(qid, question, found[:depth], ids, bm25_s) if self.names else None
        return [
            {
                "id": id_,
                "relevance": None
                if relevance is None or i >= len(relevance)
                else float(relevance[i]),
            }
            for i, id_ in enumerate(ids)
        ]

    def _rerank(
        self, qid: str, question: str, pool: Sequence[Passage], ids: list[str], bm25_s: float
    ) -> np.ndarray:
        """Assess the pool (timed), order it by every method (timed); returns its relevance."""
        started = time.perf_counter()
        relevance = self.model.assess(question, pool) if pool else np.zeros(0)
        assess_s = time.perf_counter() - started
        for method, name in self.names.items():
            started = time.perf_counter()
            order = rerank_by_relevance(relevance, replace(self.config.rerank, method=method))
            rerank_s = assess_s + time.perf_counter() - started
            self.runs[name].ranked[qid] = _unique(ids[item.index] for item in order)[
                : self.config.k
            ]
            self.runs[name].seconds.append(bm25_s + rerank_s)
        return relevance


def evaluate(
    model: SelfRetrievalModel | str | Path,
    data: str | Path,
    config: EvaluationConfig | None = None,
    *,
    show_progress: bool = True,
    on_question: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate an artifact (or a loaded model) on a BEIR folder's questions; returns a report.

    The report is shaped ``{"dataset", "config", "systems": {name: {metric: value, "p50_ms",
    "p95_ms", "queries_per_s"}}, "significance", ...}``; ``write_report`` saves it with a plot.
    """
    config = config or EvaluationConfig()
    artifact_path = None
    if not isinstance(model, SelfRetrievalModel):
        artifact_path = str(model)
        model = SelfRetrievalModel.from_pretrained(model)
    data = Path(data)
    queries, qrels = _load_questions(data, config)
    qrel_ids = {d for rel in qrels.values() for d in rel}
    self_retrieval = _SelfRetrieval(model, config, qrel_ids)
    bm25 = _BM25(model, config, qrel_ids) if config.baseline == BM25 else None
    details: dict[str, dict[str, Any]] = {}
    for number, qid in enumerate(_progress(list(qrels), show_progress), start=1):
        row: dict[str, Any] = {
            "relevant": sorted(qrels[qid]),
            SELF_RETRIEVAL: self_retrieval.run(qid, queries[qid]),
        }
        if bm25 is not None:
            row[BM25] = bm25.run(qid, queries[qid])
        if config.keep_details:
            details[qid] = row
        if on_question is not None:
            on_question(number, len(qrels))
    runs = {**self_retrieval.runs, **(bm25.runs if bm25 is not None else {})}
    return _assemble_report(model, data, config, artifact_path, qrels, runs, details)


def _progress(qids: list[str], show: bool) -> Iterable[str]:
    if not show:
        return qids
    from tqdm.auto import tqdm

    return tqdm(qids, desc="evaluating", unit="question")


def _assemble_report(
    model: SelfRetrievalModel,
    data: Path,
    config: EvaluationConfig,
    artifact_path: str | None,
    qrels: Mapping[str, Mapping[str, int]],
    runs: Mapping[str, _SystemRun],
    details: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The report: metrics, latency and paired tests per system, and what was measured how."""
    ranked = {name: run.ranked for name, run in runs.items()}
    metrics, tests = metrics_and_tests(qrels, ranked, config.stat_test)
    systems = {name: {**metrics[name], **latency(run.seconds)} for name, run in runs.items()}
    extra = {"details": details} if config.keep_details else {}
    return {
        **extra,
        "dataset": str(data),
        "config": {
            **config.to_dict(),
            "fusion": model.config.fusion.value,
            "decoding": asdict(model.config.decoding),
            "assessment": asdict(model.config.assessment),
            "artifact": artifact_path,
            "base_model": model.base_model,
        },
        "questions": len(qrels),
        "passages": len(model.store),
        "systems": systems,
        "significance": tests,
        "training": model.manifest.get("training"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "device": str(next(model.model.parameters()).device),
        },
    }
