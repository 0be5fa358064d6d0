"""Measuring retrieval quality and speed: Self-Retrieval, BM25 and BM25 + SelfReranker.

Metrics come from ranx (a maintained IR evaluation library) and significance from its paired
tests, so numbers are comparable with other IR work. Every system is measured on the same
questions in the same run. Self-Retrieval is timed stage by stage (constrained decoding, then
self-assessment) so that the variants that drop a stage get their own honest latency, computed
from the same candidates instead of decoding twice.
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from selfretrieval_integrations.errors import QueryError
from selfretrieval_integrations.retrieval import (
    Fusion,
    RerankConfig,
    RerankMethod,
    fuse_scores,
    rerank,
)

if TYPE_CHECKING:
    from selfretrieval_integrations.retrieval import RetrievalResult, SelfRetrievalModel

#: Report names of the metrics, and the ranx metric behind each (one relevant passage per
#: question makes ranx's binary ``hit_rate`` the usual Hits@k).
METRICS = {
    "hits@1": "hit_rate@1",
    "hits@5": "hit_rate@5",
    "hits@10": "hit_rate@10",
    "mrr@5": "mrr@5",
    "mrr@10": "mrr@10",
    "ndcg@10": "ndcg@10",
}
BASELINES = ("bm25",)
SELF_RETRIEVAL = "self-retrieval"
BM25 = "bm25"
RERANKED = "bm25+self-reranker"


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
        for name in ("k", "rerank_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EvaluationConfig.{name} must be an int >= 1, got {value!r}")
        if self.max_questions is not None and self.max_questions < 1:
            raise ValueError(
                f"EvaluationConfig.max_questions must be None or >= 1, got {self.max_questions}"
            )
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


def _require_ranx():  # type: ignore[no-untyped-def]
    try:
        import ranx
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            'evaluation needs ranx: pip install "selfretrieval-integrations[eval]"'
        ) from error
    return ranx


def select_questions(
    qrels: Mapping[str, Mapping[str, int]], max_questions: int | None, seed: int
) -> list[str]:
    """Question ids to evaluate: all with a relevant passage, or a seeded sample of them."""
    qids = sorted(q for q, rel in qrels.items() if any(v > 0 for v in rel.values()))
    if max_questions is not None and max_questions < len(qids):
        qids = sorted(random.Random(seed).sample(qids, max_questions))
    return qids


def _result_key(result: RetrievalResult, qrel_ids: set[str]) -> str:
    """The id qrels use for a result: its passage id, or its document id."""
    return result.passage_id if result.passage_id in qrel_ids else result.doc_id


def _dedup(ids: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    return [i for i in ids if not (i in seen or seen.add(i))]  # type: ignore[func-returns-value]


def _latency(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "queries_per_s": round(float(1000.0 / ms.mean()), 3) if ms.mean() > 0 else float("inf"),
    }


def _p_value(value: Any) -> float:
    """A p-value for the report: NaN (no difference on any question) becomes 1."""
    value = float(value)
    return 1.0 if math.isnan(value) else round(value, 5)


def _metrics_and_tests(
    qrels: Mapping[str, Mapping[str, int]],
    runs: Mapping[str, _SystemRun],
    stat_test: str,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """ranx metrics per system, and the paired test of every system against every other."""
    ranx = _require_ranx()
    ranx_qrels = ranx.Qrels({q: {d: int(v) for d, v in rel.items()} for q, rel in qrels.items()})
    ranx_runs = []
    for name, run in runs.items():
        # Scores 1/rank keep our order exactly (ranx re-sorts by score).
        scored = {
            q: ({d: 1.0 / r for r, d in enumerate(ids, start=1)} or {"<none>": 0.0})
            for q, ids in run.ranked.items()
        }
        ranx_runs.append(ranx.Run(scored, name=name))
    names = list(runs)
    if len(ranx_runs) > 1:
        with warnings.catch_warnings():
            # Identical per-question scores (common for Hits@1 between close systems) make
            # scipy warn about precision; the p-value is then taken as 1 below.
            warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
            report = ranx.compare(
                ranx_qrels, ranx_runs, list(METRICS.values()), stat_test=stat_test, max_p=0.05
            ).to_dict()
        scores = {n: report[n]["scores"] for n in names}
        tests: dict[str, dict[str, Any]] = {}
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                tests[f"{first} vs {second}"] = {
                    label: {
                        "p_value": _p_value(report[first]["comparisons"][second][metric]),
                        "wins_ties_losses": [
                            report[first]["win_tie_loss"][second][metric][key]
                            for key in ("W", "T", "L")
                        ],
                    }
                    for label, metric in METRICS.items()
                }
    else:
        scores = {names[0]: ranx.evaluate(ranx_qrels, ranx_runs[0], list(METRICS.values()))}
        tests = {}
    metrics = {
        n: {label: round(float(scores[n][metric]), 4) for label, metric in METRICS.items()}
        for n in names
    }
    return metrics, tests


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
    from selfretrieval_integrations.corpus import load_beir_qrels, load_beir_queries
    from selfretrieval_integrations.retrieval import SelfRetrievalModel

    config = config or EvaluationConfig()
    artifact_path = None
    if not isinstance(model, SelfRetrievalModel):
        artifact_path = str(model)
        model = SelfRetrievalModel.from_pretrained(model)
    data = Path(data)
    queries = load_beir_queries(data)
    qrels_all = load_beir_qrels(data, config.split)
    qids = select_questions(qrels_all, config.max_questions, config.seed)
    if not qids:
        raise QueryError(f"no question of split {config.split!r} in {data} has a relevant passage")
    missing = [q for q in qids if q not in queries]
    if missing:
        raise QueryError(
            f"{len(missing)} qrels questions are not in {data}/queries.jsonl, e.g. {missing[:5]}"
        )
    qrels = {q: qrels_all[q] for q in qids}
    qrel_ids = {d for rel in qrels.values() for d in rel}

    main_fusion = model.config.fusion
    fusions = list(Fusion) if config.variants else [main_fusion]
    runs: dict[str, _SystemRun] = {}
    sr_name = {
        f: SELF_RETRIEVAL if f is main_fusion else f"{SELF_RETRIEVAL}/{f.value}" for f in fusions
    }
    for fusion in fusions:
        runs[sr_name[fusion]] = _SystemRun()

    bm25 = None
    methods: list[RerankMethod] = []
    rr_name: dict[RerankMethod, str] = {}
    if config.baseline == BM25:
        from selfretrieval_integrations.index import BM25Index

        passages = list(model.store)
        bm25 = BM25Index(passages)
        runs[BM25] = _SystemRun()
        if config.self_reranker:
            methods = list(RerankMethod) if config.variants else [config.rerank.method]
        for method in methods:
            rr_name[method] = (
                RERANKED if method is config.rerank.method else f"{RERANKED}/{method.value}"
            )
            runs[rr_name[method]] = _SystemRun()

    details: dict[str, dict[str, Any]] = {}
    generation_only = replace(model.config, fusion=Fusion.GENERATION)
    saved_config = model.config
    iterator: Sequence[str] = qids
    if show_progress:
        from tqdm.auto import tqdm

        iterator = tqdm(qids, desc="evaluating", unit="question")
    try:
        for number, qid in enumerate(iterator, start=1):
            question = queries[qid]
            # Self-Retrieval: decode (timed), then self-assess the same candidates (timed).
            model.config = generation_only
            started = time.perf_counter()
            candidates = model.retrieve(question, k=config.k)
            decode_s = time.perf_counter() - started
            model.config = saved_config
            relevance = None
            assess_s = 0.0
            if any(f is not Fusion.GENERATION for f in fusions) and candidates:
                started = time.perf_counter()
                relevance = model.assess(question, [(c.title, c.text) for c in candidates])
                assess_s = time.perf_counter() - started
            for fusion in fusions:
                scores = fuse_scores(
                    fusion,
                    title_keys=[c.title for c in candidates],
                    title_logprobs=np.array([c.title_logprob for c in candidates]),
                    logprobs=np.array([c.generation_logprob for c in candidates]),
                    relevance=relevance,
                    temperature=model.config.temperature,
                )
                order = sorted(range(len(candidates)), key=lambda i: -scores[i])
                run = runs[sr_name[fusion]]
                run.ranked[qid] = _dedup([_result_key(candidates[i], qrel_ids) for i in order])
                run.seconds.append(decode_s + (assess_s if fusion is not Fusion.GENERATION else 0))
            if config.keep_details:
                details[qid] = {
                    "relevant": sorted(qrels[qid]),
                    "self-retrieval": [
                        {
                            "id": _result_key(c, qrel_ids),
                            "title_logprob": c.title_logprob,
                            "logprob": c.generation_logprob,
                            "relevance": None if relevance is None else float(relevance[i]),
                            "title": c.title,
                        }
                        for i, c in enumerate(candidates)
                    ],
                }

            if bm25 is not None:
                started = time.perf_counter()
                indices, _ = bm25.search([question], max(config.k, config.rerank_depth))
                bm25_s = time.perf_counter() - started
                found = [passages[int(i)] for i in indices[0] if int(i) >= 0]
                keys = [p.id if p.id in qrel_ids else p.doc_id for p in found]
                runs[BM25].ranked[qid] = _dedup(keys)[: config.k]
                runs[BM25].seconds.append(bm25_s)
                pool_relevance = None
                for method, order in _reranked_orders(
                    model, question, found[: config.rerank_depth], methods, config.rerank
                ):
                    runs[rr_name[method]].ranked[qid] = _dedup([keys[i] for i in order])[: config.k]
                    runs[rr_name[method]].seconds.append(bm25_s + order.seconds)
                    pool_relevance = order.relevance
                if config.keep_details:
                    details[qid]["bm25"] = [
                        {
                            "id": key,
                            "relevance": None
                            if pool_relevance is None or i >= len(pool_relevance)
                            else float(pool_relevance[i]),
                        }
                        for i, key in enumerate(keys)
                    ]
            if on_question is not None:
                on_question(number, len(qids))
    finally:
        model.config = saved_config

    metrics, tests = _metrics_and_tests(qrels, runs, config.stat_test)
    systems = {name: {**metrics[name], **_latency(run.seconds)} for name, run in runs.items()}
    training = model.manifest.get("training")
    extra = {"details": details} if config.keep_details else {}
    return {
        **extra,
        "dataset": str(data),
        "config": {
            **config.to_dict(),
            "fusion": main_fusion.value,
            "decoding": asdict(model.config.decoding),
            "assessment": asdict(model.config.assessment),
            "artifact": artifact_path,
            "base_model": model.base_model,
        },
        "questions": len(qids),
        "passages": len(model.store),
        "systems": systems,
        "significance": tests,
        "training": training,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "device": str(next(model.model.parameters()).device),
        },
    }


class _Order(list):  # type: ignore[type-arg]
    """Candidate indices, best first, with the seconds the reranking took."""

    seconds: float = 0.0
    relevance: np.ndarray | None = None


def _reranked_orders(
    model: SelfRetrievalModel,
    question: str,
    pool: Sequence[Any],
    methods: Sequence[RerankMethod],
    config: RerankConfig,
) -> list[tuple[RerankMethod, _Order]]:
    """The pool reordered by each rerank method; the model assesses the pool once (timed)."""
    if not methods:
        return []
    started = time.perf_counter()
    reranked = rerank(model, question, pool, config=config)
    seconds = time.perf_counter() - started
    relevance = np.zeros(len(pool))
    for item in reranked:
        relevance[item.index] = item.relevance
    orders = []
    for method in methods:
        items = (
            reranked
            if method is config.method
            else rerank(
                _FixedRelevance(relevance), question, pool, config=replace(config, method=method)
            )  # type: ignore[arg-type]
        )
        order = _Order(item.index for item in items)
        order.seconds = seconds
        order.relevance = relevance
        orders.append((method, order))
    return orders


class _FixedRelevance:
    """Stands in for the model in ``rerank`` when relevance is already known."""

    def __init__(self, relevance: np.ndarray) -> None:
        self.relevance = relevance

    def assess(self, query: str, passages: Sequence[Any]) -> np.ndarray:
        return self.relevance


def report_console() -> Any:
    """A rich console wide enough for the report table, also when output is not a terminal."""
    from rich.console import Console

    return Console(width=max(Console().width, 150))


def format_table(report: Mapping[str, Any]) -> Any:
    """A rich table of the report's systems (metrics and latency)."""
    from rich.table import Table

    table = Table(title=f"{report['dataset']}: {report['questions']} questions")
    table.add_column("system")
    for label in (*METRICS, "p50 ms", "p95 ms", "q/s"):
        table.add_column(label, justify="right")
    for name, row in report["systems"].items():
        table.add_row(
            name,
            *(f"{row[label]:.3f}" for label in METRICS),
            f"{row['p50_ms']:.1f}",
            f"{row['p95_ms']:.1f}",
            f"{row['queries_per_s']:.2f}",
        )
    return table


def plot_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """A bar chart of Hits@1/5, MRR@5 and nDCG@10 per system, beside p50 latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["systems"])
    shown = ("hits@1", "hits@5", "mrr@5", "ndcg@10")
    fig, (quality, speed) = plt.subplots(
        1, 2, figsize=(12, 0.5 * len(names) + 3), gridspec_kw={"width_ratios": [3, 1]}
    )
    height = 0.8 / len(shown)
    y = np.arange(len(names))
    for j, metric in enumerate(shown):
        values = [report["systems"][n][metric] for n in names]
        quality.barh(y + j * height, values, height, label=metric)
    quality.set_yticks(y + height * (len(shown) - 1) / 2, names)
    quality.invert_yaxis()
    quality.set_xlim(0, 1)
    quality.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=len(shown), frameon=False)
    quality.set_title(f"quality ({report['questions']} questions)")
    speed.barh(y, [report["systems"][n]["p50_ms"] for n in names], color="gray")
    speed.set_yticks(y, [])
    speed.invert_yaxis()
    speed.set_xscale("log")
    speed.set_title("p50 latency (ms, log)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(report: Mapping[str, Any], path: str | Path, *, plot: bool = True) -> Path:
    """Save the JSON report, a PNG plot beside it, and print the table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report = dict(report)
    details = report.pop("details", None)
    if details is not None:
        with path.with_suffix(".details.jsonl").open("w", encoding="utf-8") as handle:
            for qid, row in details.items():
                handle.write(json.dumps({"question": qid, **row}, ensure_ascii=False) + "\n")
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    console = report_console()
    console.print(format_table(report))
    if plot:
        console.print(f"wrote {path} and {plot_report(report, path.with_suffix('.png'))}")
    else:
        console.print(f"wrote {path}")
    return path
