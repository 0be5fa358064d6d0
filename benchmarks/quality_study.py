"""Which scores rank best: BM25, dense, Self-Retrieval, the hybrid and the rerankers, from one pass.

``features`` runs a trained artifact once over the held-out training questions (``validation``)
and the test questions, and saves, for every question, the union of its candidates (the beams'
passages, BM25's top 20, dense's top 20) with every score the systems below need: BM25, dense
cosine, the beams' generation log-probability, the teacher-forced log-probability of each
candidate's first 32 trie-key tokens after the query, and the self-assessed relevance by query
likelihood (``relevance``). ``refusal`` adds the paper's refusal for the first test questions'
beams and BM25's top 20, to compare the two on the same candidates. ``report``
then fits every convex fusion on the validation questions only (``convex.fit_weights``, the
function the library fits with) and measures every system on the test questions with ranx and
paired tests, so that no weight, depth or threshold ever sees a test question.

Usage::

    python benchmarks/quality_study.py features --workdir runs/squad-small-v
    python benchmarks/quality_study.py refusal --workdir runs/squad-small-v --questions 100
    python benchmarks/quality_study.py report --workdir runs/squad-small-v \\
        --output benchmarks/results/squad-small-quality.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GEN_TOKENS = (8, 16, 32)
DEPTH = 20
K = 10


def _judged(passage: Any, qrel_ids: set[str]) -> str:
    return passage.id if passage.id in qrel_ids else passage.doc_id


def features(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from selfretrieval_integrations.corpus import load_beir_qrels, load_beir_queries
    from selfretrieval_integrations.evaluation.harness import select_questions
    from selfretrieval_integrations.index import BM25Index, DenseIndex
    from selfretrieval_integrations.retrieval import (
        AssessmentConfig,
        Fusion,
        RetrievalMode,
        SelfRetrievalModel,
    )

    data = args.workdir / "data"
    model = SelfRetrievalModel.from_pretrained(args.workdir / "model")
    # Every passage's cache fits (about 3 GB for the small slice's 304 passages in float32).
    model.config = replace(
        model.config,
        mode=RetrievalMode.SELF,  # the beams alone: every fusion is ranked from the scores
        fusion=Fusion.GENERATION,
        assessment=AssessmentConfig(method="query_likelihood", cache_megabytes=8192),
    )
    passages = list(model.store)
    bm25 = BM25Index(passages)
    dense = DenseIndex(passages)
    queries = load_beir_queries(data)
    jobs: list[tuple[str, str, dict[str, int]]] = []
    for split, limit in (("validation", None), ("test", args.questions)):
        qrels = load_beir_qrels(data, split)
        jobs += [(split, q, qrels[q]) for q in select_questions(qrels, limit, 0)]
    out = args.workdir / "features.jsonl"
    done = set()
    if out.exists():
        done = {json.loads(line)["qid"] for line in out.read_text().splitlines() if line}
    with out.open("a", encoding="utf-8") as handle:
        for split, qid, rel in tqdm([j for j in jobs if j[1] not in done], desc="features"):
            qrel_ids = set(rel)
            question = queries[qid]
            timing: dict[str, float] = {}
            started = time.perf_counter()
            beams = model.retrieve(question, k=K)
            timing["decode_s"] = time.perf_counter() - started
            started = time.perf_counter()
            bm25_all = bm25.scores(question)
            timing["bm25_s"] = time.perf_counter() - started
            started = time.perf_counter()
            dense_all = dense.scores([question])[0]
            timing["dense_s"] = time.perf_counter() - started
            bm25_top = np.argsort(-bm25_all, kind="stable")[:DEPTH]
            dense_top = np.argsort(-dense_all, kind="stable")[:DEPTH]
            beam_idx = [model.store.index_of(r.passage_id) for r in beams]
            union = list(dict.fromkeys([*beam_idx, *map(int, bm25_top), *map(int, dense_top)]))
            pairs = [(passages[i].title, passages[i].text) for i in union]
            started = time.perf_counter()
            with model.lock:
                gen = model.assessor.target_logprobs(question, pairs, max(GEN_TOKENS))
            timing["target_logprob_s"] = time.perf_counter() - started
            started = time.perf_counter()
            with model.lock:
                ql = model.assessor.query_likelihood(question, pairs)
            timing["assess_s"] = time.perf_counter() - started
            timing["candidates"] = len(union)
            bm25_rank = {int(i): r for r, i in enumerate(bm25_top, start=1)}
            dense_rank = {int(i): r for r, i in enumerate(dense_top, start=1)}
            beam_rank = {i: r for r, i in enumerate(beam_idx, start=1)}
            candidates = []
            for n, i in enumerate(union):
                beam = beams[beam_rank[i] - 1] if i in beam_rank else None
                candidates.append(
                    {
                        "index": i,
                        "id": _judged(passages[i], qrel_ids),
                        "title": passages[i].title,
                        "beam_rank": beam_rank.get(i),
                        "beam_logprob": None if beam is None else beam.generation_logprob,
                        "title_logprob": None if beam is None else beam.title_logprob,
                        "bm25": float(bm25_all[i]),
                        "bm25_rank": bm25_rank.get(i),
                        "dense": float(dense_all[i]),
                        "dense_rank": dense_rank.get(i),
                        "gen": [round(float(x), 5) for x in gen[n]],
                        "ql": float(ql[n]),
                        "relevance": float(np.exp(ql[n])),
                        "refusal": None,  # filled in by ``refusal`` for some questions
                        "refusal_first": None,
                    }
                )
            row = {
                "qid": qid,
                "split": split,
                "relevant": sorted(d for d, v in rel.items() if v > 0),
                "timing": timing,
                "candidates": candidates,
            }
            handle.write(json.dumps(row) + "\n")
            handle.flush()
    return 0


def widen(args: argparse.Namespace) -> int:
    """Decode ``--candidates`` passages per question instead of 10 (``DecodingConfig.candidates``)
    and keep their ranks and log-probabilities as ``beam{N}_rank`` / ``beam{N}_logprob``; new
    candidates get every score ``features`` gives. Resumable."""
    from tqdm.auto import tqdm

    from selfretrieval_integrations.corpus import load_beir_queries
    from selfretrieval_integrations.retrieval import (
        AssessmentConfig,
        Fusion,
        RetrievalMode,
        SelfRetrievalModel,
    )

    n = args.candidates
    path = args.workdir / "features.jsonl"
    rows = _load(path)
    model = SelfRetrievalModel.from_pretrained(args.workdir / "model")
    model.config = replace(
        model.config,
        mode=RetrievalMode.SELF,
        fusion=Fusion.GENERATION,
        assessment=AssessmentConfig(method="query_likelihood", cache_megabytes=8192),
    )
    queries = load_beir_queries(args.workdir / "data")
    passages = list(model.store)
    rank_key, logprob_key = f"beam{n}_rank", f"beam{n}_logprob"
    todo = [r for r in rows if not any(rank_key in c for c in r["candidates"])]
    for number, row in enumerate(tqdm(todo, desc=f"{n} candidates")):
        question = queries[row["qid"]]
        decoded = model.retrieve(question, k=n)
        by_index = {c["index"]: c for c in row["candidates"]}
        new = [model.store.index_of(r.passage_id) for r in decoded]
        new = [i for i in new if i not in by_index]
        if new:
            pairs = [(passages[i].title, passages[i].text) for i in new]
            with model.lock:
                gen = model.assessor.target_logprobs(question, pairs, max(GEN_TOKENS))
                ql = model.assessor.query_likelihood(question, pairs)
            for i, g, q in zip(new, gen, ql, strict=True):
                by_index[i] = {
                    "index": i,
                    "id": _judged(passages[i], set(row["relevant"])),
                    "title": passages[i].title,
                    **dict.fromkeys(
                        ("beam_rank", "beam_logprob", "title_logprob", "bm25_rank", "dense_rank")
                    ),
                    "bm25": None,
                    "dense": None,
                    "gen": [round(float(x), 5) for x in g],
                    "ql": float(q),
                    "relevance": float(np.exp(q)),
                    "refusal": None,
                    "refusal_first": None,
                }
                row["candidates"].append(by_index[i])
        for rank, result in enumerate(decoded, start=1):
            c = by_index[model.store.index_of(result.passage_id)]
            c[rank_key], c[logprob_key] = rank, result.generation_logprob
        for c in row["candidates"]:
            c.setdefault(rank_key, None)
            c.setdefault(logprob_key, None)
        if number % 10 == 9 or number == len(todo) - 1:
            partial = path.with_suffix(".partial")
            partial.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            partial.replace(path)
    return 0


def refusal(args: argparse.Namespace) -> int:
    """Add the paper's refusal to the first ``--questions`` test questions of ``features.jsonl``:
    relevance ``1 - exp(-mean loss)`` and the log-probability of the refusal's first token alone
    (a one-position yes/no judgement), for the beams' passages and BM25's top 20. The refusal
    reads query and passage together, so nothing can be cached: a few seconds per candidate on a
    CPU, which is why only a subset is scored. Resumable."""
    from tqdm.auto import tqdm

    from selfretrieval_integrations.corpus import load_beir_queries
    from selfretrieval_integrations.retrieval import SelfRetrievalModel

    path = args.workdir / "features.jsonl"
    rows = _load(path)
    model = SelfRetrievalModel.from_pretrained(args.workdir / "model")
    assessor, renderer = model.assessor, model.renderer
    queries = load_beir_queries(args.workdir / "data")
    chosen = sorted(r["qid"] for r in rows if r["split"] == "test")[: args.questions]
    todo = [
        r
        for r in rows
        if r["qid"] in set(chosen) and all(c["refusal"] is None for c in r["candidates"])
    ]
    passages = list(model.store)
    for row in tqdm(todo, desc="refusal"):
        judged = [c for c in row["candidates"] if c["beam_rank"] or c["bm25_rank"]]
        started = time.perf_counter()
        with model.lock:
            prefix = assessor.scorer.start(renderer.encode_prompt(queries[row["qid"]]))
            pairs = [(passages[c["index"]].title, passages[c["index"]].text) for c in judged]
            logprobs = assessor.scorer.continue_rows(
                prefix,
                [
                    (
                        renderer.assessment_context_ids(t, assessor._window(x)),
                        renderer.refusal_ids(),
                    )
                    for t, x in pairs
                ],
            )
        row["timing"]["refusal_s"] = time.perf_counter() - started
        for c, lp in zip(judged, logprobs, strict=True):
            c["refusal"] = float(1 - np.exp(lp.mean()))
            c["refusal_first"] = float(lp[0])
        partial = path.with_suffix(".partial")
        partial.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        partial.replace(path)
    return 0


# -- report -------------------------------------------------------------------------------------


def _load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _gen(c: dict[str, Any], tokens: int) -> float:
    return float(sum(c["gen"][:tokens]))


def _pool(row: dict[str, Any], sources: tuple[str, ...]) -> list[dict[str, Any]]:
    """The candidates that ``sources`` (beams, bm25, dense) found, in union order."""
    found = {
        "beams": lambda c: c["beam_rank"] is not None and c["beam_rank"] <= K,
        "bm25": lambda c: c["bm25_rank"] is not None,
        "dense": lambda c: c["dense_rank"] is not None,
        "beams20": lambda c: c.get("beam20_rank") is not None,  # ``widen --candidates 20``
    }
    return [c for c in row["candidates"] if any(found[s](c) for s in sources)]


def _features(pool: list[dict[str, Any]], names: tuple[str, ...], tokens: int) -> dict:
    values: dict[str, np.ndarray] = {}
    for name in names:
        if name == "generation":
            values[name] = np.array([_gen(c, tokens) for c in pool])
        elif name == "beam":
            values[name] = np.array([c["beam_logprob"] for c in pool], dtype=np.float64)
        elif name == "beam20":
            values[name] = np.array([c["beam20_logprob"] for c in pool], dtype=np.float64)
        elif name.endswith("_rank"):  # the first stage's rank alone, for callers without scores
            values[name] = -np.array([c[name] for c in pool], dtype=np.float64)
        elif name == "log_relevance":
            values[name] = np.log(np.clip([c["relevance"] for c in pool], 1e-12, None))
        else:
            values[name] = np.array([c[name] for c in pool], dtype=np.float64)
    return values


def _ranked_ids(pool: list[dict[str, Any]], scores: np.ndarray) -> list[str]:
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return list(dict.fromkeys(pool[i]["id"] for i in order))[:K]


class Convex:
    """A convex fusion over one candidate pool, fitted on the validation rows."""

    def __init__(self, sources: tuple[str, ...], names: tuple[str, ...]) -> None:
        self.sources, self.names = sources, names
        self.tokens = GEN_TOKENS[-1]
        self.fitted: Any = None

    def fit(
        self, rows: list[dict[str, Any]], token_choices: tuple[int, ...] = GEN_TOKENS
    ) -> Convex:
        from selfretrieval_integrations.retrieval.convex import fit_weights

        best = None
        for tokens in token_choices if "generation" in self.names else (GEN_TOKENS[-1],):
            questions = []
            for row in rows:
                pool = _pool(row, self.sources)
                relevant = np.array([c["id"] in row["relevant"] for c in pool], dtype=bool)
                questions.append((_features(pool, self.names, tokens), relevant))
            fitted = fit_weights(questions, self.names)
            if best is None or fitted.objective > best[1].objective + 1e-12:
                best = (tokens, fitted)
        assert best is not None
        self.tokens, self.fitted = best
        return self

    def rank(self, row: dict[str, Any]) -> list[str]:
        from selfretrieval_integrations.retrieval.convex import convex_scores

        pool = _pool(row, self.sources)
        if not pool:
            return []
        return _ranked_ids(
            pool, convex_scores(_features(pool, self.names, self.tokens), self.fitted.weights)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "pool": list(self.sources),
            "features": list(self.names),
            "gen_tokens": self.tokens if "generation" in self.names else None,
            "fit": self.fitted.to_dict(),
        }


def _by(key: str, sources: tuple[str, ...]):
    def rank(row: dict[str, Any]) -> list[str]:
        pool = _pool(row, sources)
        return _ranked_ids(pool, np.array([-(c[key] or 1e9) for c in pool]))

    return rank


def _logprob_self_retrieval(row: dict[str, Any]) -> list[str]:
    """The ``logprob`` fusion (the ``self`` mode default): beam log-probability + log(relevance)."""
    pool = sorted(_pool(row, ("beams",)), key=lambda c: c["beam_rank"])
    scores = [c["beam_logprob"] + np.log(max(c["relevance"], 1e-12)) for c in pool]
    return _ranked_ids(pool, np.array(scores))


def _rrf(first: str):
    """The ``rrf`` SelfReranker: RRF (k=60) of the first-stage rank and the assessment rank."""

    def rank(row: dict[str, Any]) -> list[str]:
        pool = sorted(_pool(row, (first,)), key=lambda c: c[f"{first}_rank"])
        rel = np.array([c["relevance"] for c in pool])
        ranks = np.empty(len(pool))
        ranks[np.argsort(-rel, kind="stable")] = np.arange(1, len(pool) + 1)
        scores = 1 / (60 + np.arange(1, len(pool) + 1)) + 1 / (60 + ranks)
        return _ranked_ids(pool, scores)

    return rank


def _assessment_only(first: str):
    def rank(row: dict[str, Any]) -> list[str]:
        key = "beam_rank" if first == "beams" else f"{first}_rank"
        pool = sorted(_pool(row, (first,)), key=lambda c: c[key])
        return _ranked_ids(pool, np.array([c["relevance"] for c in pool]))

    return rank


def _fit_question(row: dict[str, Any], dense: bool = False) -> Any:
    """The library's fit input from one saved row (the beams' passages and BM25's top)."""
    from selfretrieval_integrations.retrieval.fitting import FitQuestion

    pool = _pool(row, ("beams", "bm25"))
    return FitQuestion(
        relevant=np.array([c["id"] in row["relevant"] for c in pool], dtype=bool),
        in_bm25=np.array([c["bm25_rank"] is not None for c in pool], dtype=bool),
        bm25=np.array([c["bm25"] for c in pool]),
        token_logprobs=[np.array(c["gen"]) for c in pool],
        relevance=np.array([c["relevance"] for c in pool]),
        dense=np.array([c["dense"] for c in pool]) if dense else None,
        beam_logprob=np.array(
            [np.nan if c["beam_logprob"] is None else c["beam_logprob"] for c in pool]
        ),
    )


def _library_hybrid(config: Any):
    """The hybrid as ``SelfRetrievalModel`` ranks it, with the library's fitted ``config``."""
    from selfretrieval_integrations.retrieval import convex_scores

    def rank(row: dict[str, Any]) -> list[str]:
        pool = _pool(row, ("beams", "bm25"))
        features = {
            "bm25": np.array([c["bm25"] for c in pool]),
            "generation": np.array([_gen(c, config.generation_tokens) for c in pool]),
            "relevance": np.array([c["relevance"] for c in pool]),
            "dense": np.array([c["dense"] for c in pool]),
        }
        scores = convex_scores(features, config.weights, as_is=config.as_is)
        order = sorted(range(len(pool)), key=lambda i: (-scores[i], pool[i]["index"]))
        return list(dict.fromkeys(pool[i]["id"] for i in order))[:K]

    return rank


def _library_self(config: Any):
    """``self`` mode's ``convex`` fusion as ``SelfRetrievalModel`` ranks it, library weights."""
    from selfretrieval_integrations.retrieval import convex_scores

    def rank(row: dict[str, Any]) -> list[str]:
        pool = _pool(row, ("beams",))
        features = {
            "generation": np.array([c["beam_logprob"] for c in pool]),
            "relevance": np.array([c["relevance"] for c in pool]),
        }
        scores = convex_scores(features, config.self_weights, as_is=config.as_is)
        order = sorted(range(len(pool)), key=lambda i: (-scores[i], pool[i]["index"]))
        return list(dict.fromkeys(pool[i]["id"] for i in order))[:K]

    return rank


def _library_reranker(config: Any, first: str):
    """The SelfReranker as ``rerank`` orders it (first-stage scores given), library weights."""
    from selfretrieval_integrations.retrieval import rerank_convex

    def rank(row: dict[str, Any]) -> list[str]:
        pool = sorted(_pool(row, (first,)), key=lambda c: c[f"{first}_rank"])
        order = rerank_convex(
            np.array([c[first] for c in pool]),
            np.array([_gen(c, config.generation_tokens) for c in pool]),
            np.array([c["relevance"] for c in pool]),
            config.rerank_weights,
            as_is=config.as_is,
        )
        return list(dict.fromkeys(pool[r.index]["id"] for r in order))[:K]

    return rank


def _assessment_comparison(test: list[dict[str, Any]]) -> dict[str, Any]:
    """Query likelihood against the refusal and its first token, on the test questions whose
    candidates the refusal scored: each alone over BM25's top 20, and each in today's ``logprob``
    fusion with the beams' generation score."""
    from selfretrieval_integrations.evaluation.metrics import metrics_and_tests

    subset = [r for r in test if any(c.get("refusal") is not None for c in r["candidates"])]
    if not subset:
        return {}
    judged = {  # higher is more relevant
        "query-likelihood": lambda c: c["ql"],
        "refusal": lambda c: c["refusal"],
        "refusal-first-token": lambda c: -c["refusal_first"],
    }
    as_probability = {
        "query-likelihood": lambda c: c["relevance"],
        "refusal": lambda c: c["refusal"],
        "refusal-first-token": lambda c: 1 - np.exp(c["refusal_first"]),
    }

    def alone(score):
        def rank(row):
            pool = sorted(_pool(row, ("bm25",)), key=lambda c: c["bm25_rank"])
            return _ranked_ids(pool, np.array([score(c) for c in pool]))

        return rank

    def fused(probability):
        def rank(row):
            pool = sorted(_pool(row, ("beams",)), key=lambda c: c["beam_rank"])
            scores = [c["beam_logprob"] + np.log(max(probability(c), 1e-12)) for c in pool]
            return _ranked_ids(pool, np.array(scores))

        return rank

    rankers = {"bm25": _by("bm25_rank", ("bm25",))}
    rankers |= {f"bm25+{name} alone": alone(score) for name, score in judged.items()}
    rankers |= {f"self-retrieval/logprob+{name}": fused(p) for name, p in as_probability.items()}
    qrels = {r["qid"]: {d: 1 for d in r["relevant"]} for r in subset}
    ranked = {name: {r["qid"]: rank(r) for r in subset} for name, rank in rankers.items()}
    metrics, tests = metrics_and_tests(qrels, ranked, "student")
    pairs = {
        pair: {m: v for m, v in result.items() if m in ("hits@1", "mrr@5")}
        for pair, result in tests.items()
        if pair.startswith(
            ("bm25 vs", "bm25+query-likelihood alone vs", "self-retrieval/logprob+q")
        )
    }
    return {"questions": len(subset), "systems": metrics, "significance": pairs}


def _passage_prior(test: list[dict[str, Any]], data: Path) -> dict[str, Any]:
    """Does self-assessment prefer passages that had training questions? Over BM25's top 20 of
    each test question: mean relevance of the right passage, of wrong passages that training
    questions named and of wrong passages none named, and how often a trained wrong passage
    outscores the right one (on the paragraph split the right one never had a question)."""
    from selfretrieval_integrations.corpus import load_beir_qrels

    held_out = set(load_beir_qrels(data, "validation"))
    trained = {
        d for q, rel in load_beir_qrels(data, "train").items() if q not in held_out for d in rel
    }
    right, wrong_trained, wrong_untrained = [], [], []
    outscored = compared = 0
    for row in test:
        pool = _pool(row, ("bm25",))
        hits = [c["relevance"] for c in pool if c["id"] in row["relevant"]]
        if not hits:
            continue
        right.append(max(hits))
        rivals = [
            c["relevance"] for c in pool if c["id"] not in row["relevant"] and c["id"] in trained
        ]
        wrong_trained += rivals
        wrong_untrained += [
            c["relevance"]
            for c in pool
            if c["id"] not in row["relevant"] and c["id"] not in trained
        ]
        if rivals:
            compared += 1
            outscored += max(rivals) > max(hits)
    return {
        "questions": len(right),
        "right_passage_trained": float(
            np.mean([any(d in trained for d in r["relevant"]) for r in test])
        ),
        "mean_relevance": {
            "right": float(np.mean(right)) if right else None,
            "wrong_trained": float(np.mean(wrong_trained)) if wrong_trained else None,
            "wrong_untrained": float(np.mean(wrong_untrained)) if wrong_untrained else None,
        },
        "trained_wrong_outscores_right": {
            "questions": compared,
            "share": outscored / max(compared, 1),
        },
    }


def report(args: argparse.Namespace) -> int:
    from selfretrieval_integrations.evaluation.metrics import latency, metrics_and_tests

    rows = _load(args.workdir / "features.jsonl")
    validation = [r for r in rows if r["split"] == "validation"]
    test = [r for r in rows if r["split"] == "test"]
    convex = {
        "self-retrieval/convex": Convex(("beams",), ("beam", "relevance")),
        "self-retrieval/convex-generation": Convex(("beams",), ("generation", "relevance")),
        "self-retrieval/convex-all": Convex(("beams",), ("beam", "generation", "relevance")),
        "hybrid": Convex(("beams", "bm25"), ("bm25", "generation", "relevance")),
        "hybrid/no-assessment": Convex(("beams", "bm25"), ("bm25", "generation")),
        "hybrid/log-relevance": Convex(("beams", "bm25"), ("bm25", "generation", "ql")),
        "hybrid/with-dense-log-relevance": Convex(
            ("beams", "bm25"), ("bm25", "dense", "generation", "ql")
        ),
        "self-retrieval/convex-log-relevance": Convex(("beams",), ("beam", "ql")),
        "bm25+self-reranker/log-relevance": Convex(("bm25",), ("bm25", "generation", "ql")),
        "dense+self-reranker/log-relevance": Convex(("dense",), ("dense", "generation", "ql")),
        "hybrid/with-dense-score": Convex(
            ("beams", "bm25"), ("bm25", "dense", "generation", "relevance")
        ),
        "hybrid/with-dense-no-assessment": Convex(
            ("beams", "bm25"), ("bm25", "dense", "generation")
        ),
        "bm25+dense": Convex(("beams", "bm25"), ("bm25", "dense")),
        "bm25+self-reranker": Convex(("bm25",), ("bm25", "generation", "relevance")),
        "bm25+self-reranker/assessment-only-fused": Convex(("bm25",), ("bm25", "relevance")),
        "bm25+self-reranker/generation-only-fused": Convex(("bm25",), ("bm25", "generation")),
        "bm25+self-reranker/by-rank": Convex(("bm25",), ("bm25_rank", "generation", "relevance")),
    }
    if all(any("beam20_rank" in c for c in r["candidates"]) for r in rows):
        convex["self-retrieval/20-candidates"] = Convex(("beams20",), ("beam20", "relevance"))
    convex["dense+self-reranker"] = Convex(("dense",), ("dense", "generation", "relevance"))
    convex["dense+self-reranker/assessment-only-fused"] = Convex(("dense",), ("dense", "relevance"))
    choices = tuple(sorted(set(args.generation_tokens or GEN_TOKENS)))
    for system in convex.values():
        system.fit(validation, choices)
    fixed = {
        "bm25": _by("bm25_rank", ("bm25",)),
        "dense": _by("dense_rank", ("dense",)),
        "self-retrieval/logprob": _logprob_self_retrieval,
        "self-retrieval/generation": _by("beam_rank", ("beams",)),
        "self-retrieval/assessment-only": _assessment_only("beams"),
        "bm25+self-reranker/rrf": _rrf("bm25"),
        "bm25+self-reranker/assessment-only": _assessment_only("bm25"),
        "dense+self-reranker/assessment-only": _assessment_only("dense"),
    }
    from selfretrieval_integrations.retrieval import HybridConfig
    from selfretrieval_integrations.retrieval.fitting import fit_from_questions

    library = fit_from_questions(
        [_fit_question(r, dense=True) for r in validation],
        HybridConfig(),
        generation_tokens=choices,
    )
    no_dense = fit_from_questions(
        [_fit_question(r) for r in validation], HybridConfig(), generation_tokens=choices
    )
    fixed |= {
        "self-retrieval/library-fit": _library_self(library),
        "hybrid/library-fit": _library_hybrid(library),
        "hybrid/library-fit-without-dense": _library_hybrid(no_dense),
        "bm25+self-reranker/library-fit": _library_reranker(library, "bm25"),
    }
    fixed["dense+self-reranker/library-fit"] = _library_reranker(library, "dense")
    rankers = {**fixed, **{name: system.rank for name, system in convex.items()}}
    qrels = {r["qid"]: {d: 1 for d in r["relevant"]} for r in test}
    ranked = {name: {r["qid"]: rank(r) for r in test} for name, rank in rankers.items()}
    metrics, tests = metrics_and_tests(qrels, ranked, "student")
    keep = {
        f"{a} vs {b}"
        for a in ("bm25", "dense", "self-retrieval/logprob")
        for b in rankers
        if a != b
    }
    tests = {
        pair: {m: v for m, v in result.items() if m in ("hits@1", "mrr@5")}
        for pair, result in tests.items()
        if pair in keep
    }
    timing = {
        stage: latency([r["timing"][stage] for r in test])
        for stage in ("decode_s", "bm25_s", "dense_s", "target_logprob_s", "assess_s")
    }
    result = {
        "dataset": str(args.workdir / "data"),
        "questions": {"validation": len(validation), "test": len(test)},
        "systems": metrics,
        "fitted": {name: system.describe() for name, system in convex.items()},
        "library_fit": {
            "self_weights": library.self_weights,
            "generation_tokens": library.generation_tokens,
            "weights": library.weights,
            "rerank_weights": library.rerank_weights,
            "fitted": library.fitted,
            "without_dense": {
                "generation_tokens": no_dense.generation_tokens,
                "weights": no_dense.weights,
                "rerank_weights": no_dense.rerank_weights,
            },
        },
        "significance": tests,
        "candidates_per_question": float(np.mean([r["timing"]["candidates"] for r in test])),
        "pool_recall": {
            "+".join(pool): float(
                np.mean([any(c["id"] in r["relevant"] for c in _pool(r, pool)) for r in test])
            )
            for pool in (("beams",), ("bm25",), ("dense",), ("beams", "bm25"), ("beams20",))
        },
        "stage_latency_ms": timing,
        "assessment_methods": _assessment_comparison(test),
        "passage_prior": _passage_prior(test, args.workdir / "data"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "command": " ".join(["python", "benchmarks/quality_study.py", *sys.argv[1:]]),
    }
    print(f"{'system':45s} hits@1  hits@5  mrr@5")
    for name, m in metrics.items():
        print(f"{name:45s} {m['hits@1']:.3f}  {m['hits@5']:.3f}  {m['mrr@5']:.3f}")
    for name, system in convex.items():
        print(name, json.dumps(system.describe()))
    print(
        "\n| system | Hits@1 | Hits@5 | MRR@5 | p (Hits@1 / MRR@5) vs BM25 |\n|---|---|---|---|---|"
    )
    for name, m in metrics.items():
        pair = tests.get(f"bm25 vs {name}", {})
        p = " / ".join(str(pair[k]["p_value"]) for k in ("hits@1", "mrr@5")) if pair else ""
        print(f"| {name} | {m['hits@1']:.3f} | {m['hits@5']:.3f} | {m['mrr@5']:.3f} | {p} |")
    methods = result["assessment_methods"]
    if methods:
        print(
            f"\nAssessment methods on the same candidates ({methods['questions']} test questions):"
        )
        print("| system | Hits@1 | Hits@5 | MRR@5 |\n|---|---|---|---|")
        for name, m in methods["systems"].items():
            print(f"| {name} | {m['hits@1']:.3f} | {m['hits@5']:.3f} | {m['mrr@5']:.3f} |")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


# -- answers ------------------------------------------------------------------------------------


def _normalize_answer(text: str) -> str:
    """SQuAD v1.1's answer normalisation (lower case, no punctuation, articles or extra spaces),
    as its official evaluation script defines it, so EM and F1 compare with published numbers."""
    import re
    import string

    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _em_f1(prediction: str, golds: list[str]) -> tuple[float, float]:
    """Best exact match and token F1 of ``prediction`` over the gold answers (official metric)."""
    from collections import Counter

    best_em = best_f1 = 0.0
    pred = _normalize_answer(prediction).split()
    for gold in golds:
        ref = _normalize_answer(gold).split()
        best_em = max(best_em, float(pred == ref))
        common = sum((Counter(pred) & Counter(ref)).values())
        if common:
            precision, recall = common / len(pred), common / len(ref)
            best_f1 = max(best_f1, 2 * precision * recall / (precision + recall))
    return best_em, best_f1


def answers(args: argparse.Namespace) -> int:
    """EM/F1 of ``answer()`` given its hybrid top passage, Self-Retrieval's, BM25's and the gold
    passage, on the test questions of ``features.jsonl``, and how often it refused
    (``--refuse``: ``answer(refuse=True)``, the model may refuse)."""
    from tqdm.auto import tqdm

    from selfretrieval_integrations.corpus import load_beir_queries, load_beir_query_metadata
    from selfretrieval_integrations.retrieval import HybridConfig, SelfRetrievalModel
    from selfretrieval_integrations.retrieval.fitting import fit_from_questions

    rows = _load(args.workdir / "features.jsonl")
    validation = [r for r in rows if r["split"] == "validation"]
    test = [r for r in rows if r["split"] == "test"][: args.questions]
    library = fit_from_questions([_fit_question(r, dense=True) for r in validation], HybridConfig())
    model = SelfRetrievalModel.from_pretrained(args.workdir / "model")
    data = args.workdir / "data"
    queries = load_beir_queries(data)
    gold_answers = {q: m.get("answers") or [] for q, m in load_beir_query_metadata(data).items()}
    by_id = {p.id: i for i, p in enumerate(model.store)}
    by_doc = {p.doc_id: i for i, p in enumerate(model.store)}
    sources = {
        "hybrid": _library_hybrid(library),
        "self-retrieval": _library_self(library),
        "bm25": _by("bm25_rank", ("bm25",)),
    }
    scores: dict[str, list[tuple[float, float]]] = {name: [] for name in [*sources, "gold"]}
    refusals: dict[str, list[bool]] = {name: [] for name in scores}
    refusal = model.renderer.template.refusal
    examples = []
    for row in tqdm(test, desc="answers"):
        question, golds = queries[row["qid"]], gold_answers.get(row["qid"], [])
        if not golds:
            continue
        passages = {name: rank(row)[0] for name, rank in sources.items() if rank(row)}
        passages["gold"] = row["relevant"][0]
        example: dict[str, Any] = {"qid": row["qid"], "answers": golds}
        predictions: dict[int, str] = {}  # sources that chose one passage share its answer
        for name, judged in passages.items():
            index = by_id.get(judged, by_doc.get(judged, 0))
            if index not in predictions:
                p = model.store[index]
                predictions[index] = model.answer(question, [(p.title, p.text)], refuse=args.refuse)
            prediction = predictions[index]
            scores[name].append(_em_f1(prediction, golds))
            refusals[name].append(prediction == refusal)
            example[name] = prediction
        examples.append(example)
    result = {
        name: {
            "exact_match": round(float(np.mean([e for e, _ in v])), 4),
            "f1": round(float(np.mean([f for _, f in v])), 4),
            "refused": round(float(np.mean(refusals[name])), 4),
            "questions": len(v),
        }
        for name, v in scores.items()
    }
    print(f"{'passage given to answer()':28s} EM     F1     refused")
    for name, m in result.items():
        print(f"{name:28s} {m['exact_match']:.3f}  {m['f1']:.3f}  {m['refused']:.3f}")
    if args.output:
        payload = {"refuse": args.refuse, "answers": result, "examples": examples[:10]}
        args.output.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("features", "widen", "refusal", "report", "answers"):
        cmd = commands.add_parser(name)
        cmd.add_argument("--workdir", type=Path, required=True)
    commands.choices["features"].add_argument("--questions", type=int, default=200)
    commands.choices["refusal"].add_argument("--questions", type=int, default=100)
    commands.choices["widen"].add_argument("--candidates", type=int, default=20)
    commands.choices["answers"].add_argument("--questions", type=int, default=200)
    commands.choices["answers"].add_argument(
        "--refuse",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="answer(refuse=...): whether the model may answer with the refusal",
    )
    for name in ("report", "answers"):
        commands.choices[name].add_argument("--output", type=Path, default=None)
    commands.choices["report"].add_argument(
        "--generation-tokens",
        type=int,
        nargs="+",
        choices=GEN_TOKENS,
        default=None,
        help="trie-key tokens the generation score may use (default: the fit picks among "
        f"{GEN_TOKENS}); fewer cost less per candidate",
    )
    args = parser.parse_args(argv)
    run = {"features": features, "widen": widen, "refusal": refusal, "report": report}
    return {**run, "answers": answers}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
