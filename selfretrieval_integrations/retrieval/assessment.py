"""Self-assessment: the model judges whether a passage answers the query.

Two ways, chosen by ``AssessmentConfig.method``:

- ``query_likelihood`` (the default): how likely the model finds the query after reading the
  passage (UPR, Sachan et al. 2022); relevance is the geometric mean of the query tokens'
  probabilities, ``exp(mean log P(query | passage))``. The passage comes first, so its key/value
  cache is kept between queries (``context_scoring``). On the SQuAD small slice it ranked BM25's
  top 20 far better than the refusal, even before training (``benchmarks/RESULTS.md``).
- ``refusal`` (the paper's): ``1 - exp(-L)`` where ``L`` is the mean token loss of the refusal
  answer (``cannot extract answer``) after query and passage: a model that would rather *not*
  refuse finds the passage relevant. The query prefix is encoded once and its cache shared by
  the passages of a batch (``scoring.ContinuationScorer``).

Passages need not be in the trie, so results of other retrievers can be reranked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from selfretrieval_integrations.corpus import cut_words
from selfretrieval_integrations.validation import checked_int

from .context_scoring import CachedContextScorer
from .rendering import Renderer
from .scoring import ContinuationScorer, EncodedPrefix

#: ``AssessmentConfig.method`` values.
ASSESSMENT_METHODS = ("query_likelihood", "refusal")


@dataclass(frozen=True)
class AssessmentConfig:
    """How passages are scored for relevance."""

    method: str = "query_likelihood"
    """``query_likelihood`` (the query after the passage) or ``refusal`` (the paper's refusal
    after query and passage); see the module's docstring. Artifacts saved before the choice
    existed keep ``refusal``, the method they were trained and fitted with."""
    cache_megabytes: int = 1024
    """Memory for the key/value caches of passages that query likelihood has read (least
    recently used ones are dropped first; 0 keeps none). SmolLM2-135M needs about 9 MB for a
    200-token passage in float32."""
    batch_size: int = 16
    """Passages scored per forward pass (they share the query's cache)."""
    max_passage_words: int = 300
    """Longer passages are cut to this many words before scoring (the start carries the topic)."""
    max_passage_tokens: int = 512
    """Passages handed to ``assess`` (or ``SelfReranker``) are cut to this many tokens first,
    with a warning: a bound that holds also for text without spaces."""
    window_tokens: int | None = None
    """Passage tokens the assessment reads (its cost grows with them); None reads up to
    ``max_passage_words``. The start of a passage carries most of what the judgement needs:
    ``benchmarks/latency.py`` measures speed and Hits@1 per window."""
    exact_ranks: int | None = None
    """Under the ``logprob`` fusion, assess only the candidates that can still reach the first
    ``exact_ranks`` places (``fusion.bounded_relevance``): those places come out exactly as if
    every candidate were assessed, the rest rank by their generation score's bound. None keeps
    all ``k`` places exact. 1 keeps the first passage exact and assessed 4 of 10 candidates per
    query on the SQuAD small slice; ``benchmarks/latency.py`` measures it."""

    def __post_init__(self) -> None:
        if self.method not in ASSESSMENT_METHODS:
            raise ValueError(
                f"AssessmentConfig.method must be one of {list(ASSESSMENT_METHODS)}, "
                f"got {self.method!r}"
            )
        checked_int(self.cache_megabytes, "AssessmentConfig.cache_megabytes", minimum=0)
        checked_int(self.batch_size, "AssessmentConfig.batch_size")
        checked_int(self.max_passage_words, "AssessmentConfig.max_passage_words")
        checked_int(self.max_passage_tokens, "AssessmentConfig.max_passage_tokens")
        if self.window_tokens is not None:
            checked_int(self.window_tokens, "AssessmentConfig.window_tokens")
        if self.exact_ranks is not None:
            checked_int(self.exact_ranks, "AssessmentConfig.exact_ranks")


class SelfAssessor:
    """Scores (query, passage) relevance by query likelihood or the refusal, in batches."""

    def __init__(
        self, model: Any, renderer: Renderer, config: AssessmentConfig | None = None
    ) -> None:
        self.model = model
        self.renderer = renderer
        self.config = config or AssessmentConfig()
        self.pad_token_id = int(
            renderer.tokenizer.pad_token_id
            if renderer.tokenizer.pad_token_id is not None
            else renderer.eos_id
        )
        self.scorer = ContinuationScorer(model, self.pad_token_id, self.config.batch_size)
        self.context_scorer = CachedContextScorer(
            model, self.pad_token_id, self.config.batch_size, self.config.cache_megabytes << 20
        )
        self.passages_assessed = 0
        """Passages judged so far, for benchmarks (the skipping rules are measured by it)."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def refusal_loss(self, query: str, passages: Sequence[tuple[str, str]]) -> np.ndarray:
        """Mean token loss of the refusal after each ``(title, text)``."""
        if not passages:
            return np.zeros(0, dtype=np.float64)
        return self._refusal_loss(self.scorer.start(self.renderer.encode_prompt(query)), passages)

    def _refusal_loss(
        self, prefix: EncodedPrefix, passages: Sequence[tuple[str, str]]
    ) -> np.ndarray:
        renderer = self.renderer
        refusal = renderer.refusal_ids()
        rows = [
            (renderer.assessment_context_ids(title, self._window(text)), refusal)
            for title, text in passages
        ]
        logprobs = self.scorer.continue_rows(prefix, rows)
        self.passages_assessed += len(rows)
        return np.array([-float(lp.mean()) for lp in logprobs], dtype=np.float64)

    def query_likelihood(self, query: str, passages: Sequence[tuple[str, str]]) -> np.ndarray:
        """Mean log-probability of the query's tokens after each ``(title, text)``."""
        return self._query_likelihood(self.renderer.question_ids(query), passages)

    def read_passages(self, passages: Sequence[tuple[str, str]]) -> int:
        """Read ``passages`` into the query-likelihood cache now, so that the first queries that
        meet them pay only for their own tokens; returns how many were read."""
        renderer = self.renderer
        contexts = [
            renderer.question_context_ids(title, self._window(text)) for title, text in passages
        ]
        return self.context_scorer.read(contexts)

    def _query_likelihood(
        self, question: list[int], passages: Sequence[tuple[str, str]]
    ) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float64)
        renderer = self.renderer
        rows = [
            (renderer.question_context_ids(title, self._window(text)), question)
            for title, text in passages
        ]
        logprobs = self.context_scorer.token_logprobs(rows)
        self.passages_assessed += len(rows)
        return np.array([float(lp.mean()) for lp in logprobs], dtype=np.float64)

    def relevance_of(self, query: str) -> Callable[[Sequence[tuple[str, str]]], np.ndarray]:
        """``relevance`` for one query over several calls (a few candidates at a time): the
        query is encoded on the first call only."""
        if self.config.method == "query_likelihood":
            question = self.renderer.question_ids(query)
            return lambda passages: np.exp(self._query_likelihood(question, passages))
        prefix: list[EncodedPrefix] = []

        def relevance(passages: Sequence[tuple[str, str]]) -> np.ndarray:
            if not passages:
                return np.zeros(0, dtype=np.float64)
            if not prefix:
                prefix.append(self.scorer.start(self.renderer.encode_prompt(query)))
            return 1.0 - np.exp(-self._refusal_loss(prefix[0], passages))

        return relevance

    def _window(self, text: str) -> str:
        """The part of a passage the assessment reads."""
        text = cut_words(text, self.config.max_passage_words)
        if self.config.window_tokens is not None:
            text = self.renderer.cut_to_tokens(text, self.config.window_tokens)[0]
        return text

    def target_logprobs(
        self, query: str, passages: Sequence[tuple[str, str]], max_tokens: int
    ) -> list[np.ndarray]:
        """Log-probability of each of the first ``max_tokens`` tokens of each passage's trie key
        after the query: the generation score of passages the beams did not decode."""
        max_tokens = checked_int(max_tokens, "max_tokens")
        if not passages:
            return []
        renderer = self.renderer
        rows = [([], list(t.ids[:max_tokens])) for t in renderer.encode_targets(passages)]
        return self.scorer.token_logprobs(renderer.encode_prompt(query), rows)

    def relevance(self, query: str, passages: Sequence[tuple[str, str]]) -> np.ndarray:
        """Relevance in [0, 1]: the query tokens' geometric mean probability after the passage,
        or ``1 - exp(-L)`` with ``L`` the refusal's mean token loss (``AssessmentConfig``)."""
        return self.relevance_of(query)(passages)
