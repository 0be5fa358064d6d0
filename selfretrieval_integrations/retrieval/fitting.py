"""Fitting the hybrid's, the SelfReranker's and ``self`` mode's convex weights on held-out
training questions.

Every question is run once: the beams' passages and BM25's top candidates are scored by BM25,
by a dense retriever's cosine (when the ``dense`` extra is installed), by the generation
log-probability of their first trie-key tokens (kept per token, so every ``generation_tokens``
on the grid is tried from one pass) and by self-assessment. The hybrid is
fitted over the union, the SelfReranker over BM25's candidates alone (its first stage), ``self``
mode over the beams' passages with their beam log-probability. The
questions must not have been trained on (``TrainingConfig.validation_fraction`` holds them out);
the fit is recorded in ``HybridConfig.fitted`` and saved with ``save_retrieval_config``.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from selfretrieval_integrations import artifact
from selfretrieval_integrations.errors import QueryError
from selfretrieval_integrations.index import dense_model_available

from .convex import (
    HYBRID_FEATURES,
    RERANK_FEATURES,
    SELF_FEATURES,
    HybridConfig,
    RetrievalMode,
    fit_weights,
)
from .fusion import Fusion

#: The ``generation_tokens`` the fit chooses from by default: 32 tokens ranked SQuAD's
#: question split 0.01-0.015 Hits@1 better and its paragraph split no better, for a third
#: more time per query (benchmarks/RESULTS.md), so 32 is offered only on request.
GENERATION_TOKENS = (8, 16)

#: The longest generation score the fit may be offered.
MAX_GENERATION_TOKENS = 32


def checked_generation_tokens(
    generation_tokens: Sequence[int], name: str = "generation_tokens"
) -> tuple[int, ...]:
    """The generation-token choices offered to the fit, sorted; a ValueError names the bad
    ones (checked before training starts, so a typo does not cost the whole run)."""
    offered = tuple(sorted(set(generation_tokens)))
    if not offered or any(
        not isinstance(t, int) or t < 1 or t > MAX_GENERATION_TOKENS for t in offered
    ):
        raise ValueError(
            f"{name} must be between 1 and {MAX_GENERATION_TOKENS}, got {list(generation_tokens)}"
        )
    return offered


@dataclass(frozen=True)
class FitQuestion:
    """One held-out question's candidates (the beams' passages and BM25's top) and their
    scores; ``token_logprobs`` holds each candidate's first trie-key token log-probabilities."""

    relevant: np.ndarray
    in_bm25: np.ndarray
    bm25: np.ndarray
    token_logprobs: list[np.ndarray]
    relevance: np.ndarray
    dense: np.ndarray | None = None
    """Each candidate's dense cosine, or None when the fit leaves the dense score out."""
    beam_logprob: np.ndarray | None = None
    """Each candidate's beam log-probability, NaN for a candidate the beams did not reach; None
    leaves ``self`` mode's weights unfitted."""

    def self_features(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """``self`` mode's features over the beams' candidates, and which are relevant."""
        assert self.beam_logprob is not None
        beams = ~np.isnan(self.beam_logprob)
        features = {"generation": self.beam_logprob[beams], "relevance": self.relevance[beams]}
        return features, self.relevant[beams]

    def features(self, tokens: int, pool: np.ndarray | None = None) -> dict[str, np.ndarray]:
        keep = np.ones(len(self.bm25), dtype=bool) if pool is None else pool
        generation = np.array([float(lp[:tokens].sum()) for lp in self.token_logprobs])
        features = {
            "bm25": self.bm25[keep],
            "first_stage": self.bm25[keep],
            "generation": generation[keep],
            "relevance": self.relevance[keep],
        }
        if self.dense is not None:
            features["dense"] = self.dense[keep]
        return features


def fit_question(
    model: Any,
    query: str,
    relevant_ids: set[str],
    depth: int,
    *,
    dense: bool = False,
    tokens: int = MAX_GENERATION_TOKENS,
) -> FitQuestion:
    """Run one held-out question: its candidates and every score the fit needs (the
    generation score's first ``tokens`` token log-probabilities)."""
    by_generation = copy.copy(model)
    by_generation.config = replace(model.config, fusion=Fusion.GENERATION, mode=RetrievalMode.SELF)
    decoded = by_generation.retrieve(query, k=10)
    beams = [model.store.index_of(r.passage_id) for r in decoded]
    beam_logprob = {i: r.generation_logprob for i, r in zip(beams, decoded, strict=True)}
    bm25 = model.bm25_index().scores(query)
    top = [int(i) for i in np.argsort(-bm25, kind="stable")[:depth]]
    union = list(dict.fromkeys([*beams, *top]))
    in_bm25 = set(top)
    passages = [model.store[i] for i in union]
    pairs = [(p.title, p.text) for p in passages]
    with model.lock:
        token_logprobs = model.assessor.target_logprobs(query, pairs, tokens)
    return FitQuestion(
        relevant=np.array([p.id in relevant_ids or p.doc_id in relevant_ids for p in passages]),
        in_bm25=np.array([i in in_bm25 for i in union]),
        bm25=bm25[union],
        token_logprobs=token_logprobs,
        relevance=model.assess(query, pairs),
        dense=model.dense_index().scores([query])[0][union] if dense else None,
        beam_logprob=np.array([beam_logprob.get(i, np.nan) for i in union], dtype=np.float64),
    )


def fit_hybrid(
    model: Any,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    step: float = 0.05,
    show_progress: bool = True,
    dense: bool | None = None,
    generation_tokens: Sequence[int] = GENERATION_TOKENS,
) -> HybridConfig:
    """The model's ``HybridConfig`` with weights fitted on ``queries`` (judged by ``qrels``).

    ``generation_tokens``: the choices the fit picks the generation score's length from; the
    fit reads only as many tokens as the longest choice, so fewer tokens also fit faster.

    ``dense``: also fit a weight for the dense score (None: when the ``dense`` extra and, for
    the default dense model, its wheel are installed). The fit may still give it weight 0; a
    positive weight makes the artifact need the extra at query time. (sentence-transformers
    alone, without that wheel, once made training fail at its last step.)
    """
    offered = checked_generation_tokens(generation_tokens)
    if dense is None:
        dense = dense_model_available(model.config.hybrid.dense_model)
    qids = [q for q in sorted(qrels) if q in queries and any(v > 0 for v in qrels[q].values())]
    if not qids:
        raise QueryError("fitting fusion weights needs held-out questions with a relevant passage")
    depth = model.config.hybrid.bm25_depth
    iterator: Iterable[str] = qids
    if show_progress:
        from tqdm.auto import tqdm

        iterator = tqdm(qids, desc="fitting fusion", unit="question")
    questions = [
        fit_question(
            model,
            queries[q],
            {d for d, v in qrels[q].items() if v > 0},
            depth,
            dense=dense,
            tokens=max(offered),
        )
        for q in iterator
    ]
    return fit_from_questions(questions, model.config.hybrid, step=step, generation_tokens=offered)


def fit_from_questions(
    questions: list[FitQuestion],
    base: HybridConfig,
    *,
    step: float = 0.05,
    prior: HybridConfig | None = None,
    generation_tokens: Sequence[int] = GENERATION_TOKENS,
) -> HybridConfig:
    """``base`` with the weights, and the ``generation_tokens`` (of those offered), that rank
    ``questions`` best (hybrid and reranker objectives summed, so both share one
    ``generation_tokens``; fewer tokens cost less per candidate); ties go to
    the weights closest to ``prior``'s (default: the library's unfitted ``HybridConfig()``), which
    stand unless the fit beats them by more than chance (``fit_weights``); a re-fit so starts
    from the same place as the first fit, not from its result. The
    dense score is fitted only when every question carries it."""
    prior = prior or HybridConfig()
    with_dense = bool(questions) and all(q.dense is not None for q in questions)
    names = [n for n in HYBRID_FEATURES if with_dense or n != "dense"]
    best: dict[str, Any] = {}
    offered = checked_generation_tokens(generation_tokens)
    for tokens in offered:
        hybrid = fit_weights(
            [(q.features(tokens), q.relevant) for q in questions],
            names,
            step=step,
            prior=prior.weights,
            as_is=base.as_is,
        )
        rerank = fit_weights(
            [(q.features(tokens, q.in_bm25), q.relevant[q.in_bm25]) for q in questions],
            RERANK_FEATURES,
            step=step,
            prior=prior.rerank_weights,
            as_is=base.as_is,
        )
        score = hybrid.objective + rerank.objective
        if not best or score > best["score"] + 1e-12:
            best = {"score": score, "tokens": tokens, "hybrid": hybrid, "rerank": rerank}
    self_weights = base.self_weights
    fitted_self = None
    if questions and all(q.beam_logprob is not None for q in questions):
        fitted_self = fit_weights(
            [q.self_features() for q in questions],
            SELF_FEATURES,
            step=step,
            prior=prior.self_weights,
            as_is=base.as_is,
        )
        self_weights = fitted_self.weights
    return replace(
        base,
        generation_tokens=best["tokens"],
        weights=best["hybrid"].weights,
        rerank_weights=best["rerank"].weights,
        self_weights=self_weights,
        fitted={
            "self_objective": None if fitted_self is None else round(fitted_self.objective, 4),
            "questions": len(questions),
            "metric": best["hybrid"].metric,
            "hybrid_objective": round(float(best["hybrid"].objective), 4),
            "rerank_objective": round(float(best["rerank"].objective), 4),
            "step": step,
            "dense": with_dense,
        },
    )


def save_retrieval_config(
    path: str | Path, config: Any, *, lock_timeout: float | None = None
) -> None:
    """Write ``config`` (a ``RetrievalConfig``) into a new generation of the artifact at ``path``;
    every other file is linked from the current generation unchanged."""
    path = Path(path)
    with artifact.new_generation(path, "fit-fusion", lock_timeout=lock_timeout) as new:
        current, _ = artifact.resolve(path)
        manifest = artifact.read_manifest(current, verify=True, verify_weights=False)
        for entry in current.iterdir():
            if entry.is_dir():
                artifact.link_or_copy(entry, new / entry.name)
            elif entry.name != artifact.MANIFEST_FILE:
                shutil.copy2(entry, new / entry.name)
        history = list(manifest.get("history") or [])
        history.append(artifact.history_entry("fit-fusion", **(config.hybrid.fitted or {})))
        updated = {k: v for k, v in manifest.items() if k not in ("files", "generation")}
        updated.update(retrieval_config=config.to_dict(), history=history)
        artifact.write_manifest(new, updated)
