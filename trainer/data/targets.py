"""Retrieval targets: each passage's trie key, cut where it identifies the passage.

Every target is a prefix of ``Renderer.encode_target`` (the function that also makes the trie
keys), so the ids a model learns are, token for token, the ids the trie allows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selfretrieval_integrations.corpus import Corpus
from selfretrieval_integrations.errors import CorpusError
from selfretrieval_integrations.index import PassageTrie
from selfretrieval_integrations.retrieval import EncodedTarget, Renderer


def unique_depths(trie: PassageTrie) -> np.ndarray:
    """For each passage index, the number of target tokens that identify it in ``trie``.

    It is the depth of the passage's leaf: the shortest prefix of its key that no other (different)
    key shares. Passages with identical keys share a leaf, whose depth is the whole key.
    """
    return np.asarray(trie.unique_depths(), dtype=np.int64)


def checked_depths(depths: Sequence[int] | np.ndarray, corpus: Corpus) -> np.ndarray:
    """``depths`` as int64, if it holds one integer per passage of ``corpus``."""
    array = np.asarray(depths)
    if array.shape != (len(corpus),) or (array.size and array.dtype.kind not in "iu"):
        raise CorpusError(
            f"depths has shape {array.shape} and dtype {array.dtype}; it must hold one integer per "
            f"passage of the corpus ({len(corpus)}): use unique_depths(trie) with the trie built "
            "from this corpus"
        )
    return array.astype(np.int64)


def _cut_length(target: EncodedTarget, depth: int, extra_tokens: int) -> int:
    """Target tokens to train on: identify the passage and start its text, never past the EOS."""
    return min(len(target.ids), max(int(depth), target.title_length + extra_tokens))


class PassageTargets:
    """Encodes passage targets lazily, once each, and optionally checks them against the trie."""

    def __init__(
        self,
        renderer: Renderer,
        corpus: Corpus,
        depths: np.ndarray,
        extra_tokens: int,
        trie: PassageTrie | None = None,
    ) -> None:
        self.renderer = renderer
        self.corpus = corpus
        self.depths = depths
        self.extra_tokens = extra_tokens
        self.trie = trie
        self._cache: dict[int, EncodedTarget] = {}

    def target(self, p: int) -> EncodedTarget:
        found = self._cache.get(p)
        if found is None:
            passage = self.corpus[p]
            found = self._cache[p] = self.renderer.encode_target(passage.title, passage.text)
            depth = int(self.depths[p])
            if depth > len(found.ids) or (
                self.trie is not None and p not in self.trie.passage_ids_for_prefix(found.ids)
            ):
                raise CorpusError(
                    f"the trie does not hold passage {p} ({passage.id!r}) as this renderer "
                    "encodes it: the trie was built from another corpus, tokenizer or template; "
                    "rebuild it with selfretrieval_integrations.retrieval.build_trie(tokenizer, "
                    "template, corpus)"
                )
        return found

    def cut(self, p: int) -> int:
        return _cut_length(self.target(p), int(self.depths[p]), self.extra_tokens)
