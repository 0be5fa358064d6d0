"""Reranking other retrievers' candidates with the model's self-assessment.

``rerank`` serves the LangChain and LlamaIndex rerankers; the evaluation harness, which assesses
a pool once and orders it by every method, uses its ordering steps (``rerank_by_relevance``,
``rerank_convex``), so every entry point ranks the same way. The first stage is kept as a prior:
a small model's relevance judgement is noisy. The default fuses the first stage's scores (or its
ranks), the model's generation score of each passage and its relevance by a convex combination
with fitted weights; ``benchmarks/RESULTS.md`` measured it against reciprocal-rank fusion, which
lowered BM25's first place.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from selfretrieval_integrations.corpus import Passage
from selfretrieval_integrations.errors import QueryError
from selfretrieval_integrations.validation import checked_int

from .convex import RERANK_FEATURES, bounded_convex_scores, checked_weights
from .fusion import judged

if TYPE_CHECKING:
    from .model import SelfRetrievalModel


class RerankMethod(str, Enum):
    """How the final order of reranked candidates is decided."""

    ASSESSMENT = "assessment"
    """Self-assessment relevance only; the first-stage order only breaks ties."""
    RRF = "rrf"
    """Reciprocal-rank fusion of the first-stage rank and the self-assessment rank."""
    CONVEX = "convex"
    """Convex fusion of normalised first-stage scores, generation scores and relevance, weighted
    by ``weights`` (default: the model's ``HybridConfig.rerank_weights``, fitted on held-out
    training questions)."""


@dataclass(frozen=True)
class RerankConfig:
    """Settings of ``rerank``."""

    method: RerankMethod = RerankMethod.CONVEX
    """``convex`` (default), ``rrf`` or ``assessment``."""
    rrf_k: float = 60.0
    """The constant of reciprocal-rank fusion (larger flattens both rankings)."""
    assessment_weight: float = 1.0
    """Weight of the self-assessment rank in ``rrf``; the first stage has weight 1."""
    weights: Mapping[str, float] | None = None
    """Weights of ``convex`` over ``first_stage``, ``generation`` and ``relevance``; None uses
    the model's fitted ``HybridConfig.rerank_weights``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", RerankMethod(self.method))
        if self.weights is not None:
            object.__setattr__(
                self,
                "weights",
                checked_weights(self.weights, RERANK_FEATURES, "RerankConfig.weights"),
            )
        if self.rrf_k <= 0:
            raise ValueError(f"RerankConfig.rrf_k must be > 0, got {self.rrf_k}")
        if self.assessment_weight < 0:
            raise ValueError(
                f"RerankConfig.assessment_weight must be >= 0, got {self.assessment_weight}"
            )


@dataclass(frozen=True)
class Reranked:
    """One candidate after reranking: its position in the input, score and relevance."""

    index: int
    score: float
    relevance: float | None
    """The model's relevance judgement; None when it was not needed (a passage that could not
    reach the exact places, or a fusion without relevance weight)."""


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, best (largest) first; ties keep input order."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks


def rerank(
    model: SelfRetrievalModel,
    query: str,
    passages: Sequence[Passage | str | tuple[str, str]],
    *,
    scores: Sequence[float | None] | None = None,
    top_n: int | None = None,
    config: RerankConfig | None = None,
) -> list[Reranked]:
    """Reorder ``passages`` (given best first by some retriever) for ``query``.

    Passages may be anything ``SelfRetrievalModel.assess`` accepts: indexed ``Passage`` objects,
    plain strings, or ``(title, text)`` pairs, so results from BM25 or a vector store work too.
    ``scores`` are the first stage's own scores (higher is better), when it gives them; without
    them (or with any missing) its order stands in for them.
    """
    if top_n is not None:
        top_n = checked_int(top_n, "top_n", error=QueryError)
    if scores is not None and len(scores) != len(passages):
        raise QueryError(f"got {len(passages)} passages but {len(scores)} scores")
    if not passages:
        return []
    config = config or RerankConfig()
    if config.method is not RerankMethod.CONVEX:
        return rerank_by_relevance(model.assess(query, passages), config)[:top_n]
    weights = config.weights or model.config.hybrid.rerank_weights
    # A score with weight 0 changes no rank: not computed (as in the hybrid).
    generation = (
        model.generation_scores(query, model.bounded_pairs(passages))
        if weights.get("generation", 0.0) > 0
        else None
    )
    first_stage = _first_stage(scores, len(passages))
    places = model.exact_places(min(top_n or len(passages), len(passages)))
    order = rerank_convex(
        first_stage,
        generation,
        model.relevance_of(query, passages),
        weights,
        places=places,
        as_is=model.config.hybrid.as_is,
    )
    return order[:top_n]


def _first_stage(scores: Sequence[float | None] | None, n: int) -> np.ndarray:
    """The first stage's scores, or minus its ranks when any score is missing."""
    if scores is None or any(s is None for s in scores):
        return -np.arange(1, n + 1, dtype=np.float64)
    values = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        return -np.arange(1, n + 1, dtype=np.float64)
    return values


def rerank_convex(
    first_stage: np.ndarray,
    generation: np.ndarray | None,
    relevance: np.ndarray | Callable[[list[int]], np.ndarray],
    weights: Mapping[str, float],
    *,
    places: int | None = None,
    as_is: Collection[str] = (),
) -> list[Reranked]:
    """The ``convex`` order of passages (best first by the first stage); ties keep that order.

    ``generation``: None when its weight is 0 (not computed). ``relevance``: every passage's, or a
    function from positions to theirs, which is then asked only for the passages that can reach the
    first ``places`` (default: all places) when relevance is on the probability scale (``as_is``;
    ``convex.bounded_convex_scores``). A passage that was not assessed has relevance None and scores
    its bound.
    """
    first_stage = np.asarray(first_stage, dtype=np.float64)
    assess = relevance if callable(relevance) else _lookup(np.asarray(relevance, dtype=np.float64))
    features = {"first_stage": first_stage}
    if generation is not None:
        features["generation"] = np.asarray(generation, dtype=np.float64)
    scores, known = bounded_convex_scores(
        features, weights, assess, places or len(first_stage), as_is=as_is
    )
    order = np.argsort(-scores, kind="stable")
    return [Reranked(int(i), float(scores[i]), judged(known, int(i))) for i in order]


def _lookup(values: np.ndarray) -> Callable[[list[int]], np.ndarray]:
    return lambda chosen: values[chosen]


def rerank_by_relevance(
    relevance: np.ndarray, config: RerankConfig | None = None
) -> list[Reranked]:
    """The ``rrf`` or ``assessment`` order of passages (best first by the first stage) of known
    relevance."""
    config = config or RerankConfig()
    if config.method is RerankMethod.CONVEX:
        raise ValueError("the convex order needs generation scores too: use rerank_convex")
    relevance = np.asarray(relevance, dtype=np.float64)
    if config.method is RerankMethod.ASSESSMENT:
        scores = relevance
    else:
        first_stage = np.arange(1, len(relevance) + 1, dtype=np.float64)
        scores = 1.0 / (config.rrf_k + first_stage) + config.assessment_weight / (
            config.rrf_k + _ranks(relevance)
        )
    order = np.argsort(-scores, kind="stable")
    return [Reranked(int(i), float(scores[i]), float(relevance[i])) for i in order]
