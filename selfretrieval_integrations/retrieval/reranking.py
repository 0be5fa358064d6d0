"""Reranking other retrievers' candidates with the model's self-assessment.

``rerank`` serves the LangChain and LlamaIndex rerankers; the evaluation harness, which assesses
a pool once and orders it by every method, uses its ordering step ``rerank_by_relevance``, so
every entry point ranks the same way. The first-stage order can be kept as a prior: a small
model's relevance judgement is noisy, and fusing it with the retriever's own ranking
(reciprocal-rank fusion) is what ``benchmarks/RESULTS.md`` measured to decide the default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from selfretrieval_integrations.corpus import Passage
from selfretrieval_integrations.errors import QueryError
from selfretrieval_integrations.validation import checked_int

if TYPE_CHECKING:
    from .model import SelfRetrievalModel


class RerankMethod(str, Enum):
    """How the final order of reranked candidates is decided."""

    ASSESSMENT = "assessment"
    """Self-assessment relevance only; the first-stage order only breaks ties."""
    RRF = "rrf"
    """Reciprocal-rank fusion of the first-stage rank and the self-assessment rank."""


@dataclass(frozen=True)
class RerankConfig:
    """Settings of ``rerank``."""

    method: RerankMethod = RerankMethod.RRF
    """``assessment`` or ``rrf``."""
    rrf_k: float = 60.0
    """The constant of reciprocal-rank fusion (larger flattens both rankings)."""
    assessment_weight: float = 1.0
    """Weight of the self-assessment rank in ``rrf``; the first stage has weight 1."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", RerankMethod(self.method))
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
    relevance: float


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
    top_n: int | None = None,
    config: RerankConfig | None = None,
) -> list[Reranked]:
    """Reorder ``passages`` (given best first by some retriever) for ``query``.

    Passages may be anything ``SelfRetrievalModel.assess`` accepts: indexed ``Passage`` objects,
    plain strings, or ``(title, text)`` pairs, so results from BM25 or a vector store work too.
    """
    if top_n is not None:
        top_n = checked_int(top_n, "top_n", error=QueryError)
    if not passages:
        return []
    relevance = model.assess(query, passages)
    return rerank_by_relevance(relevance, config)[:top_n]


def rerank_by_relevance(
    relevance: np.ndarray, config: RerankConfig | None = None
) -> list[Reranked]:
    """The order ``rerank`` gives passages (best first by the first stage) of known relevance."""
    config = config or RerankConfig()
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
