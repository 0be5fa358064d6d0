"""Convex fusion: a weighted sum of per-query normalised scores, with weights fitted on
held-out questions.

Bruch et al. (arXiv 2210.11934) show that a convex combination of min-max normalised lexical and
semantic scores beats reciprocal-rank fusion once its one weight is tuned on a few queries, and
that it degrades gracefully when the weight is off. RRF throws the scores away: a passage that
both lists found jumps ahead however weak it is in each, which is how it lowered BM25 on SQuAD.
Here the scores are BM25's, a dense retriever's cosine, the model's generation log-probability of
the passage and its self-assessed relevance (any subset, any other names), and the weights live
in the artifact's manifest once fitted.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from selfretrieval_integrations.index.dense import DEFAULT_DENSE_MODEL

from .fusion import bounded_relevance


def minmax(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to [0, 1] within one query; a constant column carries no signal (0)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    low, high = float(values.min()), float(values.max())
    if high - low <= 1e-12:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def convex_scores(
    features: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    *,
    as_is: Collection[str] = (),
) -> np.ndarray:
    """``sum_f weights[f] * minmax(features[f])`` over the features with a positive weight;
    features named in ``as_is`` are already on a fixed [0, 1] scale and enter unscaled."""
    used = {name: w for name, w in weights.items() if w > 0}
    missing = sorted(set(used) - set(features))
    if missing:
        raise ValueError(f"fusion weights name features that were not computed: {missing}")
    if not used:
        raise ValueError("convex fusion needs at least one positive weight")
    size = len(next(iter(features.values())))
    total = np.zeros(size, dtype=np.float64)
    for name, weight in used.items():
        values = np.asarray(features[name], dtype=np.float64)
        total += weight * (values if name in as_is else minmax(values))
    return total


def bounded_convex_scores(
    features: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    assess: Callable[[list[int]], np.ndarray],
    places: int,
    *,
    as_is: Collection[str] = (),
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(scores, relevance)`` of the convex fusion when ``relevance`` is the costly score:
    ``features`` hold every other score, ``assess(chosen)`` gives the chosen candidates'.

    On the probability scale (``"relevance" in as_is``) relevance adds at most its weight, so only
    the candidates that can still reach the first ``places`` are assessed
    (``fusion.bounded_relevance``); the others score that bound and get NaN relevance. Scaled per
    query, relevance needs every candidate. Without a relevance weight, none is assessed (None).
    """
    size = len(next(iter(features.values())))
    weight = float(weights.get("relevance", 0.0))
    if weight <= 0:
        return convex_scores(features, weights, as_is=as_is), None
    everyone = list(range(size))
    if "relevance" not in as_is:
        relevance = np.asarray(assess(everyone), dtype=np.float64)
        scores = convex_scores({**features, "relevance": relevance}, weights, as_is=as_is)
        return scores, relevance
    others = {name: w for name, w in weights.items() if name != "relevance" and w > 0}
    base = convex_scores(features, others, as_is=as_is) if others else np.zeros(size)
    relevance = bounded_relevance(
        base + weight, places, assess, lambda chosen, values: base[chosen] + weight * values
    )
    scores = np.where(np.isnan(relevance), base + weight, base + weight * np.nan_to_num(relevance))
    return scores, relevance


@dataclass(frozen=True)
class FittedWeights:
    """The weights a fit chose, the objective they reached and how many questions it used."""

    weights: dict[str, float]
    objective: float
    questions: int
    metric: str = "mrr@5"

    def to_dict(self) -> dict[str, object]:
        return {
            "weights": self.weights,
            "objective": round(self.objective, 4),
            "questions": self.questions,
            "metric": self.metric,
        }


def _reciprocal_ranks(scores: np.ndarray, relevant: np.ndarray, depth: int) -> np.ndarray:
    """Reciprocal rank of the first relevant candidate within ``depth``, for every row of
    ``scores`` (one weighting per row); ties go to the earlier candidate, as a stable sort does.

    The fit scores hundreds of weightings of the same questions, so all of them are ranked at
    once. Reported metrics come from ranx in the evaluation."""
    best = np.zeros(scores.shape[0], dtype=np.float64)
    for r in np.flatnonzero(relevant):
        column = scores[:, r : r + 1]
        rank = 1 + (scores > column).sum(axis=1) + (scores[:, :r] == column).sum(axis=1)
        best = np.maximum(best, np.where(rank <= depth, 1.0 / rank, 0.0))
    return best


def simplex_grid(names: Sequence[str], step: float) -> list[dict[str, float]]:
    """Every weighting of ``names`` with weights on a ``step`` grid that sum to 1."""
    n = round(1 / step)
    if abs(n * step - 1) > 1e-9:
        raise ValueError(f"step must divide 1, got {step}")
    grid = []
    for parts in itertools.product(range(n + 1), repeat=len(names) - 1):
        if sum(parts) <= n:
            last = n - sum(parts)
            grid.append(
                {name: round(k / n, 6) for name, k in zip(names, (*parts, last), strict=True)}
            )
    return grid


def fit_weights(
    questions: Sequence[tuple[Mapping[str, np.ndarray], np.ndarray]],
    names: Sequence[str],
    *,
    step: float = 0.05,
    depth: int = 5,
    prior: Mapping[str, float] | None = None,
    as_is: Collection[str] = (),
) -> FittedWeights:
    """The weighting of ``names`` with the best mean MRR@``depth`` over ``questions``.

    Each question is ``(features, relevant)``: one score array per feature over its candidates
    and a boolean array marking the relevant ones. Questions with no relevant candidate cannot
    tell weightings apart and count 0.

    With a ``prior`` (the weights used when nothing is fitted), a few questions cannot overrule
    it by chance: ties between weightings go to the one closest (L1) to it, and the best
    weighting replaces it only when it beats it by more than one standard error of the paired
    per-question difference (the one-standard-error rule). Without a prior, ties go to the first
    weighting in grid order. ``as_is``: features that enter unscaled (``convex_scores``).
    """
    if not questions:
        raise ValueError("fitting fusion weights needs at least one question")
    grid = simplex_grid(names, step)
    matrix = np.array([[w[name] for name in names] for w in grid])
    target = None
    if prior is not None and any(prior.get(name, 0.0) > 0 for name in names):
        target = np.array([float(prior.get(name, 0.0)) for name in names])
        matrix = np.vstack([matrix, target])  # its own objective, on the grid or not
    per_question = np.zeros((len(questions), len(matrix)), dtype=np.float64)
    for row, (features, relevant) in enumerate(questions):
        normed = np.stack(
            [
                np.asarray(features[name], dtype=np.float64)
                if name in as_is
                else minmax(features[name])
                for name in names
            ]
        )
        relevant = np.asarray(relevant, dtype=bool)
        if relevant.any():
            per_question[row] = _reciprocal_ranks(matrix @ normed, relevant, depth)
    objectives = per_question[:, : len(grid)].mean(axis=0)
    tied = np.flatnonzero(objectives >= objectives.max() - 1e-12)
    metric = f"mrr@{depth}"
    if target is None:
        index = int(tied[0])
        return FittedWeights(grid[index], float(objectives[index]), len(questions), metric)
    distance = np.abs(matrix[tied] - target).sum(axis=1)
    index = int(tied[np.argmin(distance)])
    gain = per_question[:, index] - per_question[:, -1]
    error = gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else np.inf
    if not gain.mean() > error:
        weights = {name: float(w) for name, w in zip(names, target, strict=True)}
        return FittedWeights(weights, float(per_question[:, -1].mean()), len(questions), metric)
    return FittedWeights(grid[index], float(objectives[index]), len(questions), metric)


class RetrievalMode(str, Enum):
    """Where a query's candidates come from."""

    SELF = "self"
    """The model's own trie-constrained beams, ranked by ``RetrievalConfig.fusion``."""
    HYBRID = "hybrid"
    """The beams' passages together with BM25's top ``HybridConfig.bm25_depth``, ranked by the
    convex fusion of BM25, dense (optional), generation and relevance scores
    (``HybridConfig.weights``)."""


#: Feature names of the hybrid (and of the convex SelfReranker, whose first stage is the
#: retriever that found the candidates).
HYBRID_FEATURES = ("bm25", "dense", "generation", "relevance")
RERANK_FEATURES = ("first_stage", "generation", "relevance")
#: Feature names of the ``convex`` fusion in ``self`` mode: the beam's log-probability of the
#: passage it decoded, and relevance.
SELF_FEATURES = ("generation", "relevance")
#: ``HybridConfig.relevance_scale`` values.
RELEVANCE_SCALES = ("probability", "minmax")


def checked_weights(weights: Mapping[str, float], names: Sequence[str], what: str) -> dict:
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"{what} has unknown features {unknown}; use {list(names)}")
    values = {name: float(weights.get(name, 0.0)) for name in names}
    if any(w < 0 for w in values.values()) or not any(w > 0 for w in values.values()):
        raise ValueError(f"{what} must be >= 0 with at least one > 0, got {dict(weights)}")
    return values


@dataclass(frozen=True)
class HybridConfig:
    """Weights of hybrid retrieval and of the convex SelfReranker (saved in the manifest).

    The defaults are the weights fitted on the SQuAD small slice's 107 held-out training
    questions with SmolLM2-135M and query-likelihood relevance (``benchmarks/RESULTS.md``);
    training with questions (or ``selfretrieval fit-fusion``) fits them on an artifact's own
    held-out questions and records the fit in ``fitted``.
    """

    bm25_depth: int = 20
    """BM25 candidates added to the beams' passages."""
    generation_tokens: int = 32
    """Tokens of each candidate's trie key whose log-probability after the query is its
    generation score (the start identifies a passage; the rest adds cost, little signal)."""
    weights: Mapping[str, float] = field(
        default_factory=lambda: {"bm25": 0.25, "generation": 0.25, "relevance": 0.5}
    )
    """Convex weights of the hybrid's ``bm25``, ``dense``, ``generation`` and ``relevance``
    scores; a zero weight skips computing that score (``relevance`` is the slow one, ``dense``
    needs the ``dense`` extra and encodes the corpus once per loaded model)."""
    dense_model: str = DEFAULT_DENSE_MODEL
    """The sentence-transformers model of the ``dense`` score: the offline all-MiniLM-L6-v2 of
    the ``dense`` extra, a hub id or a folder."""
    rerank_weights: Mapping[str, float] = field(
        default_factory=lambda: {"first_stage": 0.25, "generation": 0.25, "relevance": 0.5}
    )
    """Convex weights of the SelfReranker's ``first_stage`` (the retriever's scores, or its
    ranks when it gives none), ``generation`` and ``relevance`` scores."""
    self_weights: Mapping[str, float] = field(
        default_factory=lambda: {"generation": 0.15, "relevance": 0.85}
    )
    """Convex weights of the ``convex`` fusion in ``self`` mode (``RetrievalConfig.fusion``): the
    beams' ``generation`` log-probability and ``relevance``, over the beams' passages alone."""
    relevance_scale: str = "minmax"
    """How relevance enters the convex fusions: ``minmax`` (scaled within each query like the
    other scores) or ``probability`` (as it is, a probability comparable across queries). On the
    probability scale relevance adds at most its weight, so only the candidates that can still
    reach the first ``AssessmentConfig.exact_ranks`` places are assessed: on the SQuAD small
    slice with the refusal's relevance, 1.1 of 26 per hybrid query for the first place, at 0.815
    Hits@1 against minmax's 0.845 (``benchmarks/RESULTS.md``). Weights must be fitted on the
    scale they are used with (``selfretrieval fit-fusion --relevance-scale``)."""
    fitted: Mapping[str, object] | None = None
    """What fitted the weights (questions, objective), or None for the defaults."""

    def __post_init__(self) -> None:
        if not isinstance(self.bm25_depth, int) or self.bm25_depth < 0:
            raise ValueError(f"HybridConfig.bm25_depth must be an int >= 0, got {self.bm25_depth}")
        if not isinstance(self.generation_tokens, int) or self.generation_tokens < 1:
            raise ValueError(
                f"HybridConfig.generation_tokens must be an int >= 1, got {self.generation_tokens}"
            )
        if self.relevance_scale not in RELEVANCE_SCALES:
            raise ValueError(
                f"HybridConfig.relevance_scale must be one of {list(RELEVANCE_SCALES)}, "
                f"got {self.relevance_scale!r}"
            )
        object.__setattr__(
            self, "weights", checked_weights(self.weights, HYBRID_FEATURES, "HybridConfig.weights")
        )
        object.__setattr__(
            self,
            "rerank_weights",
            checked_weights(self.rerank_weights, RERANK_FEATURES, "HybridConfig.rerank_weights"),
        )
        object.__setattr__(
            self,
            "self_weights",
            checked_weights(self.self_weights, SELF_FEATURES, "HybridConfig.self_weights"),
        )

    @property
    def as_is(self) -> tuple[str, ...]:
        """The features the convex fusions take unscaled (``convex_scores``)."""
        return ("relevance",) if self.relevance_scale == "probability" else ()
