"""The passage trie at query time: ``PassageTrie`` and its node-level API for the decoder.

``PassageTrie`` is a radix (path-compressed) tree over the tokenized passages, stored as flat numpy
arrays plus a marisa trie of node paths (:mod:`.trie_layout`), built vectorised
(:mod:`.trie_build`) and saved as plain ``.npy`` files that load memory-mapped (:mod:`.trie_io`).
A decoder walks it node by node (vectorised, by node id); arbitrary token prefixes are resolved
through marisa in C.

Keys and cuts
    ``keys[i]`` is the full token-id sequence of passage ``i`` (its rendering, ending with EOS).
    Each distinct key is cut at its *unique depth*: the shortest prefix that no other, different
    key shares. The rest of the passage is known once that prefix is generated, so the trie stores
    nothing below it. Identical keys (the same text under several passage ids) share one leaf that
    lists all of their passage indices; none is dropped.

End marker
    If a key is a proper prefix of another key (only possible when keys lack an end token), the
    shorter key ends with an explicit end marker: its leaf hangs off the node where it ends, behind
    a one-token edge labelled ``end_token`` (``-1``, never a real token id). Such a leaf's depth
    counts the marker. The marker sorts before every real token, so it is always the first child.

Titles
    ``title_lengths[i]`` leading tokens of ``keys[i]`` form its title segment (title plus a fixed
    marker). A node boundary is forced at that depth on the key's path whenever the title ends
    inside the stored cut, even if the node has a single child, and such a node is a *title end*
    (:meth:`PassageTrie.is_title_end_node`): for at least one passage below it, the title segment
    ends exactly at the end of its label. A leaf is a title end when a title ends exactly at the
    cut. A title longer than the cut (the title alone identifies the passage) has no title end.

Nodes
    Internal nodes are numbered ``0 .. n_internal - 1`` in DFS pre-order (children visited by
    ascending first token; node 0 is the root). Leaves are ranked in DFS order and the leaf of rank
    ``r`` is node ``n_internal + r``. A leaf is not stored as a node: its label is always exactly
    one token (the one on its parent's child entry), its depth is its parent's plus one and it
    covers the leaves ``[r, r + 1)``. Code should go through the accessors (:meth:`child_ranges`,
    :meth:`child_tokens`, :meth:`edge`, :meth:`leaf_bounds`, :meth:`is_leaf`, ...) rather than
    index the arrays by node id.

Filters
    There is no ``restrict``: a subset of passages (a filter, an access list, deleted documents) is
    applied without rebuilding, through :meth:`PassageTrie.allowed_leaf_counts`. A node may be
    taken iff ``counts[hi] - counts[lo] > 0`` with ``lo, hi = leaf_bounds(node)``, i.e. it has an
    allowed passage below.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import ClassVar, NamedTuple

import marisa_trie
import numpy as np

from selfretrieval_integrations.errors import QueryError

from .trie_build import build_from_flat, build_from_keys
from .trie_io import read_trie, write_trie
from .trie_layout import (
    ARRAY_NAMES,
    END_TOKEN,
    concat_ranges,
    index_dtype,
    marisa_query,
    readonly,
)

__all__ = ["PassageTrie"]


class _Walk(NamedTuple):
    """Where walking a token prefix down the trie ended."""

    node: int
    offset: int
    """Tokens of ``node``'s label the prefix consumed."""
    label_length: int
    consumed: int
    """Tokens of the prefix consumed: fewer than its length only past a leaf (past the cut)."""


class PassageTrie:
    """Radix trie over the token ids of every passage, cut where each passage becomes unique.

    Build it with :meth:`build`, persist it with :meth:`save` / :meth:`load` (memory-mapped). A
    decoder walks it by node id with :meth:`child_ranges` and :meth:`child_tokens` (vectorised over
    the CSR arrays), feeds edges with :meth:`edge`, and restricts it to a subset of passages with
    :meth:`allowed_leaf_counts` and :meth:`leaf_bounds` (filters never rebuild the trie).
    :meth:`next_tokens` and :meth:`passage_ids_for_prefix` resolve arbitrary token prefixes through
    marisa. See the module docstring for the end-marker and title rules.
    """

    root: ClassVar[int] = 0
    end_token: ClassVar[int] = END_TOKEN

    child_start: np.ndarray
    child_code: np.ndarray
    child_node: np.ndarray
    label_start: np.ndarray
    label_code: np.ndarray
    internal_depth: np.ndarray
    leaf_lo: np.ndarray
    leaf_hi: np.ndarray
    leaf_passages: np.ndarray
    multi_leaf: np.ndarray
    multi_extra: np.ndarray
    is_title_end: np.ndarray
    title_end_leaf: np.ndarray
    node_of_key: np.ndarray

    def __init__(self, arrays: dict[str, np.ndarray], marisa: marisa_trie.Trie) -> None:
        """Wrap arrays made by :meth:`build` or read by :meth:`load`; not meant to be called."""
        for name in ARRAY_NAMES:
            setattr(self, name, arrays[name])
        self._marisa = marisa
        self.n_internal = len(self.internal_depth)
        self.n_nodes = len(self.child_node) + 1
        self.n_leaves = self.n_nodes - self.n_internal
        self.n_passages = len(self.leaf_passages)
        self.token_dtype = np.dtype(self.child_code.dtype)
        # Scalar hot paths (look-ups, the decoder's per-node calls) index these memoryviews of
        # the same buffers: an item is a Python int, several times cheaper than a numpy scalar.
        self._child_start = memoryview(self.child_start)
        self._child_code = memoryview(self.child_code)
        self._child_node = memoryview(self.child_node)
        self._label_start = memoryview(self.label_start)
        self._label_code = memoryview(self.label_code)
        self._internal_depth = memoryview(self.internal_depth)
        self._node_of_key = memoryview(self.node_of_key)
        self._leaf_lo = memoryview(self.leaf_lo)
        self._leaf_hi = memoryview(self.leaf_hi)
        self._multi_leaf = memoryview(self.multi_leaf)
        self._multi_extra = memoryview(self.multi_extra)
        self._title_end_leaf = memoryview(self.title_end_leaf)

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        keys: Sequence[Sequence[int]],
        title_lengths: Sequence[int] | np.ndarray | None = None,
        *,
        show_progress: bool = False,
    ) -> PassageTrie:
        """Build the trie of ``keys`` (one token-id sequence per passage, passage i = keys[i]).

        ``title_lengths[i]`` is the number of leading tokens of ``keys[i]`` that form its title
        segment (None: no titles). Raises ``CorpusError`` for an empty corpus, an empty key, a
        token id outside ``[0, MAX_TOKEN_ID]`` or a title length outside ``[0, len(key)]``.
        Keys given as 1-d integer numpy arrays are converted fastest; see also
        :meth:`build_flat`.
        """
        return cls(*build_from_keys(keys, title_lengths, show_progress=show_progress))

    @classmethod
    def build_flat(
        cls,
        tokens: np.ndarray,
        offsets: np.ndarray,
        title_lengths: Sequence[int] | np.ndarray | None = None,
        *,
        show_progress: bool = False,
    ) -> PassageTrie:
        """Like :meth:`build`, from one flat array: key i is ``tokens[offsets[i]:offsets[i + 1]]``.

        Avoids holding a million Python lists when the corpus is tokenized in bulk.
        """
        return cls(*build_from_flat(tokens, offsets, title_lengths, show_progress=show_progress))

    # ------------------------------------------------------------------ node-level API

    def __len__(self) -> int:
        return self.n_passages

    def __repr__(self) -> str:
        return (
            f"PassageTrie(n_passages={self.n_passages}, n_leaves={self.n_leaves}, "
            f"n_nodes={self.n_nodes})"
        )

    def _check_node(self, node: int) -> int:
        node = int(node)
        if not 0 <= node < self.n_nodes:
            raise ValueError(
                f"node {node} is not in this trie (node ids are 0..{self.n_nodes - 1})"
            )
        return node

    def is_leaf(self, node: int) -> bool:
        """Whether ``node`` is a leaf (it then identifies one distinct key)."""
        return int(node) >= self.n_internal

    def child_ranges(self, nodes: np.ndarray | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, ends)``: the children of ``nodes[i]`` are at CSR positions
        ``starts[i]:ends[i]`` of ``child_code`` / ``child_node`` (empty for leaves)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        leaf = nodes >= self.n_internal
        starts = self.child_start[np.where(leaf, self.n_internal, nodes)]
        ends = self.child_start[np.where(leaf, self.n_internal, nodes + 1)]
        return starts.astype(np.int64, copy=False), ends.astype(np.int64, copy=False)

    def child_tokens(self, positions: np.ndarray | Sequence[int] | slice) -> np.ndarray:
        """First tokens (int64; the end marker as ``end_token``) at CSR ``positions``."""
        return np.subtract(self.child_code[positions], 1, dtype=np.int64)

    def _tokens_of(self, node: int, a: int, b: int) -> np.ndarray:
        """Decoded first tokens of ``node``'s children at ``a:b`` (the root's are cached)."""
        return self._root_tokens if node == self.root else self.child_tokens(slice(a, b))

    @cached_property
    def _root_tokens(self) -> np.ndarray:
        """The root's child tokens, decoded once: its fan-out is the largest (up to the vocab)."""
        return readonly(self.child_tokens(slice(0, int(self.child_start[1]))))

    def leaf_bounds(self, nodes: np.ndarray | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)``: node ``nodes[i]`` covers the leaf ranks ``[lo[i], hi[i])`` (int64)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        rank = nodes - self.n_internal
        leaf = rank >= 0
        at = np.where(leaf, 0, nodes)
        lo = np.where(leaf, rank, self.leaf_lo[at])
        hi = np.where(leaf, rank + 1, self.leaf_hi[at])
        return lo, hi

    def _bounds(self, node: int) -> tuple[int, int]:
        node = int(node)
        if node >= self.n_internal:
            return node - self.n_internal, node - self.n_internal + 1
        return self._leaf_lo[node], self._leaf_hi[node]

    def edge(self, node: int, first_token: int) -> list[int]:
        """The tokens fed to move into ``node`` from its parent: ``first_token`` (the token the
        mask allowed, e.g. EOS for the end marker) followed by the rest of ``node``'s label."""
        node = int(node)
        if node >= self.n_internal:
            return [int(first_token)]
        codes = self._label_code[self._label_start[node] + 1 : self._label_start[node + 1]]
        return [int(first_token), *(c - 1 for c in codes.tolist())]

    def leaf_depths(self) -> np.ndarray:
        """The depth of every leaf, by rank (int64): the length of its cut key. O(n_nodes)."""
        counts = np.diff(self.child_start)
        parent = np.repeat(np.arange(self.n_internal, dtype=np.int64), counts)
        leaf = self.child_node >= self.n_internal
        depths = np.empty(self.n_leaves, dtype=np.int64)
        depths[self.child_node[leaf] - self.n_internal] = self.internal_depth[parent[leaf]]
        return depths + 1

    def passage_leaves(self) -> np.ndarray:
        """The leaf rank of every passage (a new array; O(n_passages))."""
        out = np.empty(self.n_passages, dtype=self.leaf_lo.dtype)
        out[self.leaf_passages] = np.repeat(
            np.arange(self.n_leaves, dtype=out.dtype), np.diff(self._passage_starts())
        )
        return out

    def unique_depths(self) -> np.ndarray:
        """For every passage, the depth of its leaf: how many leading tokens of its key identify
        it (the whole key plus the end marker for a key that is a prefix of another). O(n)."""
        return self.leaf_depths()[self.passage_leaves()]

    def is_title_end_node(self, node: int) -> bool:
        """Whether a title segment ends exactly at the end of ``node``'s label (see Titles)."""
        node = int(node)
        if node < self.n_internal:
            return bool(self.is_title_end[node])
        rank = node - self.n_internal
        i = bisect_left(self._title_end_leaf, rank)
        return i < len(self._title_end_leaf) and self._title_end_leaf[i] == rank

    @cached_property
    def has_title_ends(self) -> bool:
        """Whether any node is a title end (the corpus was built with titles that end in it)."""
        return bool(len(self.title_end_leaf) or np.any(self.is_title_end))

    def _passage_start(self, rank: int) -> int:
        """Position in ``leaf_passages`` of the first passage of leaf ``rank`` (or the end)."""
        return rank + self._multi_extra[bisect_left(self._multi_leaf, rank)]

    def _passage_starts(self) -> np.ndarray:
        """:meth:`_passage_start` of every rank ``0..n_leaves`` (int64)."""
        add = np.zeros(self.n_leaves + 1, dtype=np.int64)
        add[self.multi_leaf.astype(np.int64) + 1] = np.diff(self.multi_extra)
        return np.arange(self.n_leaves + 1, dtype=np.int64) + np.cumsum(add)

    def passages_at(self, node: int) -> np.ndarray:
        """Passage indices of a leaf, or of every leaf below an internal node (read-only view)."""
        lo, hi = self._bounds(node)
        return self.leaf_passages[self._passage_start(lo) : self._passage_start(hi)]

    def allowed_leaf_counts(self, passage_mask: np.ndarray | None) -> np.ndarray:
        """Prefix sums over leaves of "the leaf holds at least one allowed passage".

        Returns ``counts`` of length ``n_leaves + 1``; node ``n`` is allowed iff
        ``counts[hi] - counts[lo] > 0`` with ``lo, hi = leaf_bounds(n)``. ``passage_mask`` is a
        boolean array with one entry per passage; None allows every passage. This is how filters
        restrict the trie to a subset of passages without rebuilding it. Cost: O(n_passages).
        """
        dtype = index_dtype(self.n_leaves + 1)
        if passage_mask is None:
            return np.arange(self.n_leaves + 1, dtype=dtype)
        mask = np.asarray(passage_mask)
        if mask.dtype != np.bool_ or mask.shape != (self.n_passages,):
            raise QueryError(
                f"passage_mask has shape {mask.shape} and dtype {mask.dtype}; it must be a "
                f"boolean array with one entry per passage ({self.n_passages},)"
            )
        has_allowed = mask[self.leaf_passages]  # passages in leaf order
        if len(self.multi_leaf):  # fold the few leaves with several passages into one entry
            first = self.multi_leaf.astype(np.int64) + self.multi_extra[:-1]
            size = np.diff(self.multi_extra).astype(np.int64) + 1
            any_allowed = np.logical_or.reduceat(
                has_allowed[concat_ranges(first, size)], np.cumsum(size) - size
            )
            has_allowed = np.delete(has_allowed, concat_ranges(first + 1, size - 1))
            has_allowed[self.multi_leaf] = any_allowed
        counts = np.zeros(self.n_leaves + 1, dtype=dtype)
        np.cumsum(has_allowed, out=counts[1:])
        return counts

    def count_allowed(self, node: int, counts: np.ndarray) -> int:
        """Number of allowed leaves below ``node`` (``counts`` from :meth:`allowed_leaf_counts`)."""
        lo, hi = self._bounds(node)
        return int(counts[hi] - counts[lo])

    # ------------------------------------------------------------------ prefix look-ups

    def _child(self, node: int, token: int) -> int:
        """The child of internal ``node`` whose label starts with ``token``, or -1."""
        code = token + 1
        b = self._child_start[node + 1]
        i = bisect_left(self._child_code, code, self._child_start[node], b)
        if i < b and self._child_code[i] == code:
            return self._child_node[i]
        return -1

    def _find(self, prefix: Sequence[int] | np.ndarray) -> _Walk | None:
        """Walk ``prefix`` down the trie; None if it leaves the trie."""
        toks = prefix.tolist() if isinstance(prefix, np.ndarray) else list(prefix)
        m = len(toks)
        if m == 0:
            return _Walk(self.root, 0, 0, 0)
        try:
            text = marisa_query(toks)
        except (ValueError, OverflowError):
            return None  # a token id no key can hold
        except TypeError as exc:
            raise QueryError(
                f"prefix must be a sequence of integer token ids; got {prefix!r:.80}"
            ) from exc
        # The deepest internal node whose path is a prefix of the query (marisa, in C).
        key = -1
        for _, key in self._marisa.iter_prefixes_with_ids(text):  # noqa: B007
            pass
        node = self._node_of_key[key] if key >= 0 else 0
        d = self._internal_depth[node]
        if d == m:
            length = self._label_start[node + 1] - self._label_start[node]
            return _Walk(node, length, length, m)
        # One child search; the query ends inside that child's label or runs past a leaf.
        child = self._child(node, toks[d])
        if child < 0:
            return None
        if child >= self.n_internal:  # a leaf: one token
            return _Walk(child, 1, 1, d + 1)
        start = self._label_start[child]
        length = self._label_start[child + 1] - start
        take = min(m - d, length)
        if take > 1 and self._label_code[start + 1 : start + take].tolist() != [
            t + 1 for t in toks[d + 1 : d + take]
        ]:
            return None
        if m - d <= length:
            return _Walk(child, m - d, length, m)
        return None  # unreachable: marisa would have matched the internal child's path

    def next_tokens(
        self,
        prefix: Sequence[int] | np.ndarray,
        passage_mask: np.ndarray | None = None,
        *,
        allowed_counts: np.ndarray | None = None,
    ) -> np.ndarray:
        """The tokens allowed after ``prefix`` (ascending int64; may include ``end_token``).

        Empty if the prefix is complete (it reached a leaf), is not in the trie, or has no
        allowed passage below it. ``passage_mask`` (one bool per passage) restricts the trie
        to a subset; for repeated calls pass ``allowed_counts=allowed_leaf_counts(mask)``
        instead, which skips the O(n_passages) preparation.
        """
        found = self._find(prefix)
        if found is None or found.consumed != len(prefix) or found.node >= self.n_internal:
            return np.zeros(0, dtype=np.int64)
        node, offset, length, _ = found
        counts = allowed_counts
        if counts is None and passage_mask is not None:
            counts = self.allowed_leaf_counts(passage_mask)
        if offset < length:  # inside the label: one way on
            if counts is not None and self.count_allowed(node, counts) == 0:
                return np.zeros(0, dtype=np.int64)
            code = self._label_code[self._label_start[node] + offset]
            return np.array([code - 1], dtype=np.int64)
        a, b = self._child_start[node], self._child_start[node + 1]
        tokens = self._tokens_of(node, a, b)
        if counts is None:
            return tokens
        lo, hi = self.leaf_bounds(self.child_node[a:b])
        return tokens[counts[hi] - counts[lo] > 0]

    def passage_ids_for_prefix(self, prefix: Sequence[int] | np.ndarray) -> np.ndarray:
        """Passages identified by ``prefix``: those of the leaf it reaches, else empty.

        Empty when the prefix is ambiguous (it stops above a leaf) or not in the trie. Tokens
        of ``prefix`` past the leaf (past the cut) are not checked: the trie does not store them,
        so compare with the corpus if the whole text must match. A key that ends where another
        continues (see the end marker) is identified by ``prefix + [end_token]``.
        """
        found = self._find(prefix)
        if found is None or found.node < self.n_internal:
            return self.leaf_passages[:0]
        return self.passages_at(found.node)

    # ------------------------------------------------------------------ persistence

    def array_nbytes(self) -> dict[str, int]:
        """Bytes held by each stored array (the derived views are not counted)."""
        return {name: int(getattr(self, name).nbytes) for name in ARRAY_NAMES}

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (not counting the marisa trie)."""
        return sum(self.array_nbytes().values())

    def save(self, folder: str | Path) -> Path:
        """Write the trie into ``folder`` (created if needed); the caller handles atomicity."""
        return write_trie(folder, {name: getattr(self, name) for name in ARRAY_NAMES}, self._marisa)

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> PassageTrie:
        """Read a trie written by :meth:`save`; arrays and marisa are memory-mapped by default.

        Raises ``ArtifactError`` naming the file that is missing, unreadable or inconsistent.
        """
        return cls(*read_trie(folder, mmap))
