"""BM25 over the same passages (bm25s): the baseline every Self-Retrieval number is set against."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selfretrieval_integrations.corpus import Passage


class BM25Index:
    """A bm25s index over ``title + text`` of passages, ranked by passage index."""

    def __init__(self, passages: Sequence[Passage], *, stopwords: str | None = "en") -> None:
        import bm25s  # a core dependency (hybrid retrieval); imported when first needed

        self._bm25s = bm25s
        self.stopwords = stopwords
        self.size = len(passages)
        texts = [f"{p.title}\n{p.text}" if p.title else p.text for p in passages]
        tokens = bm25s.tokenize(texts, stopwords=stopwords, show_progress=False)
        self.index = bm25s.BM25()
        self.index.index(tokens, show_progress=False)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, scores)`` of shape (len(queries), min(k, size)), best first."""
        k = min(k, self.size)
        tokens = self._bm25s.tokenize(list(queries), stopwords=self.stopwords, show_progress=False)
        indices, scores = self.index.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return np.asarray(indices), np.asarray(scores)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for ``query`` (indexed by passage), for fusing with
        scores of candidates that BM25 itself did not rank."""
        tokens = self._bm25s.tokenize(
            [query], stopwords=self.stopwords, show_progress=False, return_ids=False
        )
        return np.asarray(self.index.get_scores(tokens[0]), dtype=np.float64)

    def rank_of(self, query: str, passage_index: int) -> int:
        """1-based rank of one passage for ``query`` (over the whole corpus)."""
        indices, _ = self.search([query], self.size)
        found = np.flatnonzero(indices[0] == passage_index)
        return int(found[0]) + 1 if len(found) else self.size + 1
