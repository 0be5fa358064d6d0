"""Combining generation scores with self-assessment into one ranking score, and the order it gives.

``rank_candidates`` is the one place where candidates are scored and sorted: the model ranks its
decoded passages with it, and the evaluation harness ranks the same candidates once per fusion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np


class Fusion(str, Enum):
    """How the final score of a retrieved passage is computed."""

    PAPER = "paper"
    """softmax over titles of exp(title score)/T, times softmax within the title of relevance/T."""
    LOGPROB = "logprob"
    """Generation log-probability plus log(relevance): one probabilistic score."""
    GENERATION = "generation"
    """Generation log-probability only (no self-assessment; fastest)."""
    CONVEX = "convex"
    """Convex weights (``HybridConfig.self_weights``, fitted on held-out questions) of the
    min-max normalised generation log-probability and relevance."""


@dataclass(frozen=True, eq=False)
class Candidates:
    """One query's candidate passages and the scores that fusion combines, one entry each."""

    passages: Sequence[int]
    """Store indices of the passages (ties in the final score go to the lower index)."""
    titles: Sequence[str]
    """Their titles, which group candidates in the ``paper`` fusion."""
    title_logprobs: np.ndarray
    """Generation log-probability of each candidate's title."""
    logprobs: np.ndarray
    """Generation log-probability of each candidate (title and passage)."""
    relevance: np.ndarray | None = None
    """Self-assessed relevance of each candidate; None when none was assessed, NaN for one that
    ``bounded_relevance`` skipped (the ``logprob`` fusion then scores it by its bound)."""


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


def fuse_scores(
    method: Fusion | str,
    *,
    title_keys: Sequence[object],
    title_logprobs: np.ndarray,
    logprobs: np.ndarray,
    relevance: np.ndarray | None,
    temperature: float = 0.4,
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Final scores of candidates (higher is better); ``title_keys`` group candidates by title,
    ``weights`` are the ``convex`` fusion's."""
    method = Fusion(method)
    logprobs = np.asarray(logprobs, dtype=np.float64)
    if method is Fusion.GENERATION or relevance is None:
        return logprobs
    relevance = np.asarray(relevance, dtype=np.float64)
    if method is Fusion.CONVEX:
        from .convex import convex_scores  # convex builds on this module

        if weights is None:
            raise ValueError("the convex fusion needs weights (HybridConfig.self_weights)")
        if np.isnan(relevance).any():
            raise ValueError("the convex fusion needs the relevance of every candidate")
        return convex_scores({"generation": logprobs, "relevance": relevance}, weights)
    if method is Fusion.LOGPROB:
        assessed = ~np.isnan(relevance)
        fused = logprobs + np.log(np.clip(np.where(assessed, relevance, 1.0), 1e-12, None))
        return np.where(assessed, fused, logprobs)
    if np.isnan(relevance).any():
        raise ValueError(f"the {method.value} fusion needs the relevance of every candidate")
    if temperature <= 0:
        raise ValueError(f"fusion temperature must be positive, got {temperature}")
    groups: dict[object, list[int]] = {}
    for i, key in enumerate(title_keys):
        groups.setdefault(key, []).append(i)
    keys = list(groups)
    title_scores = np.array([np.exp(title_logprobs[groups[key][0]]) for key in keys])
    title_probs = _softmax(title_scores / temperature)
    scores = np.zeros(len(logprobs), dtype=np.float64)
    for key, p_title in zip(keys, title_probs, strict=True):
        members = np.asarray(groups[key])
        scores[members] = p_title * _softmax(relevance[members] / temperature)
    return scores


def rank_candidates(
    candidates: Candidates,
    fusion: Fusion | str,
    temperature: float,
    *,
    stable: bool = False,
    weights: Mapping[str, float] | None = None,
) -> tuple[list[int], np.ndarray]:
    """``(order, scores)``: candidate positions best first, and the fused score of each candidate.

    Ties go to the lower passage index, so the order never depends on the decoder's. ``stable``
    keeps the given order on ties instead (the evaluation's candidates come in generation order,
    which then breaks the ties).
    """
    scores = fuse_scores(
        fusion,
        title_keys=candidates.titles,
        title_logprobs=candidates.title_logprobs,
        logprobs=candidates.logprobs,
        relevance=candidates.relevance,
        temperature=temperature,
        weights=weights,
    )
    positions = range(len(scores))
    if stable:
        return sorted(positions, key=lambda i: -scores[i]), scores
    return sorted(positions, key=lambda i: (-scores[i], candidates.passages[i])), scores


def bounded_relevance(
    upper: np.ndarray,
    places: int,
    assess: Callable[[list[int]], np.ndarray],
    fused: Callable[[list[int], np.ndarray], np.ndarray],
) -> np.ndarray:
    """Relevance of just the candidates that can still reach the first ``places`` of a fusion;
    NaN for the others, which are never assessed.

    ``upper[i]`` is the most candidate ``i`` can score whatever its relevance, ``fused(chosen,
    relevance)`` the scores of the ``chosen`` candidates given theirs (never above ``upper``), and
    ``assess(chosen)`` their relevance. Candidates are assessed highest bound first, ``places`` at
    a time, until the next bound falls below the ``places``-th best score so far: the first
    ``places`` of the final order are then exactly what assessing every candidate gives, and the
    skipped candidates, ranked by their bound, stay below them. The ``logprob`` fusion's bound is
    the generation log-probability (relevance is below 1, its log below 0); a convex fusion's,
    the other scores plus relevance's weight. On the SQuAD small slice the first place needed 4.0
    of 10 assessments per query in ``self`` mode and 1.5 of 26 in the hybrid
    (``benchmarks/RESULTS.md``).
    """
    upper = np.asarray(upper, dtype=np.float64)
    relevance = np.full(len(upper), np.nan)
    order = [int(i) for i in np.argsort(-upper, kind="stable")]
    places = max(1, places)
    done = 0
    while done < len(order):
        chunk = order[done : done + places]
        relevance[chunk] = assess(chunk)
        done += len(chunk)
        if places <= done < len(order):
            known = order[:done]
            scores = np.asarray(fused(known, relevance[known]), dtype=np.float64)
            if upper[order[done]] < np.sort(scores)[-places]:
                break
    return relevance


def logprob_fused(logprobs: np.ndarray) -> Callable[[list[int], np.ndarray], np.ndarray]:
    """The ``logprob`` fusion's scores of chosen candidates, for ``bounded_relevance`` (whose
    ``upper`` is then ``logprobs``)."""
    logprobs = np.asarray(logprobs, dtype=np.float64)
    return lambda chosen, relevance: logprobs[chosen] + np.log(np.clip(relevance, 1e-12, None))


def judged(relevance: np.ndarray | None, i: int) -> float | None:
    """Candidate ``i``'s relevance, None when it was not judged (``bounded_relevance`` skipped
    it, or the fusion needed none)."""
    if relevance is None or np.isnan(relevance[i]):
        return None
    return float(relevance[i])
