"""A compact prefix trie over tokenized passages, used to constrain decoding to the corpus.

``PassageTrie`` is a radix (path-compressed) tree stored as flat numpy arrays plus a marisa trie of
node paths. A decoder walks it node by node (vectorised, by node id); arbitrary token prefixes are
resolved through marisa in C. The whole structure saves to a folder of plain ``.npy`` files that
load memory-mapped.

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
    covers the leaves ``[r, r + 1)``. Code should go through the accessors (:meth:`children`,
    :meth:`child_ranges`, :meth:`edge`, :meth:`leaf_bounds`, :meth:`is_leaf`, ...) rather than
    index the arrays by node id.

Array layout (all read-only; ``n_int = n_internal``)
    ``child_start`` (n_int + 1), ``child_code``, ``child_node`` (n_nodes - 1): CSR children; the
        children of internal node ``n`` are at positions ``child_start[n]:child_start[n + 1]``
        (:meth:`child_ranges`), keyed by the first token of their label, ascending.
    Token codes: ``child_code`` and ``label_code`` hold ``token + 1`` (the end marker is 0, so it
        sorts first) as uint16 when every token id is below 65535, else uint32; the dtype is
        recorded in ``trie.json``. :meth:`child_tokens` and the other accessors decode them.
    ``label_start`` (n_int + 1), ``label_code``: the edge label of internal node ``n`` (the tokens
        between its parent and ``n``, first token included) is
        ``label_code[label_start[n]:label_start[n + 1]]``; the root's label is empty.
    ``internal_depth`` (n_int): tokens from the root to the end of ``n``'s label.
    ``leaf_lo``, ``leaf_hi`` (n_int): internal node ``n`` covers the leaves ``[leaf_lo[n],
        leaf_hi[n])`` (:meth:`leaf_bounds` covers leaves too).
    ``leaf_passages`` (n_passages): passage indices grouped by leaf rank, ascending within a leaf,
        so the passages below any node are one contiguous slice. Almost every leaf holds one
        passage; ``multi_leaf`` (ascending ranks of the leaves holding several) and ``multi_extra``
        (``multi_extra[i]``: passages beyond the first in ``multi_leaf[:i]``) locate the others:
        the passages of leaf ``r`` start at ``r + multi_extra[searchsorted(multi_leaf, r)]``.
    ``is_title_end`` (n_int, bool) and ``title_end_leaf`` (ascending leaf ranks): see Titles.
    ``node_of_key``: see below.
    Nothing is stored per passage beyond ``leaf_passages``: the leaf of each passage
    (:meth:`passage_leaves`) and unique depths (:meth:`unique_depths`) are derived on request.

Filters
    There is no ``restrict``: a subset of passages (a filter, an access list, deleted documents) is
    applied without rebuilding, through :meth:`PassageTrie.allowed_leaf_counts`. A node may be
    taken iff ``counts[hi] - counts[lo] > 0`` with ``lo, hi = leaf_bounds(node)``, i.e. it has an
    allowed passage below.

Files written by :meth:`PassageTrie.save`
    ``trie.json`` (format version, counts, end marker, token code dtype, array dtypes and shapes),
    one ``<name>.npy`` per array and ``trie.marisa``. The marisa trie holds the full token path of
    every internal node except the root (one character per token: ``chr(t + 1)``, shifted past
    the surrogate range); ``node_of_key`` maps its key ids to node ids. Leaves are not stored there:
    each leaf is one token below its parent, so a look-up reaches it with one child search.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import Any, ClassVar

import marisa_trie
import numpy as np
from tqdm.auto import tqdm

from selfretrieval_integrations.errors import ArtifactError, CorpusError, QueryError

__all__ = ["END_TOKEN", "MAX_TOKEN_ID", "PassageTrie"]

END_TOKEN = -1
"""The edge token that ends a key which is a proper prefix of another key."""

_SURROGATE_LO = 0xD800
_SURROGATE_SPAN = 0x800
MAX_TOKEN_ID = 0x10FFFF - 1 - _SURROGATE_SPAN
"""The largest token id the trie can hold (one unicode character per token in marisa)."""

FORMAT_NAME = "selfretrieval-passage-trie"
FORMAT_VERSION = 2
MANIFEST_FILE = "trie.json"
MARISA_FILE = "trie.marisa"
TOKEN_CODE = "token + 1 (0 = end marker)"

_ARRAY_NAMES: tuple[str, ...] = (
    "child_start",
    "child_code",
    "child_node",
    "label_start",
    "label_code",
    "internal_depth",
    "leaf_lo",
    "leaf_hi",
    "leaf_passages",
    "multi_leaf",
    "multi_extra",
    "is_title_end",
    "title_end_leaf",
    "node_of_key",
)

# Rows per chunk when gathering token windows during the sort (bounds temporary memory).
_CHUNK_ROWS = 1 << 16
# Tokens compared per sorting round; packed three per uint64 word (21 bits each).
_WINDOW = 18
_CODE_BITS = 21


def _index_dtype(max_value: int) -> type[np.signedinteger[Any]]:
    """int32 when every value fits, else int64."""
    return np.int32 if max_value < np.iinfo(np.int32).max else np.int64


def _uint_dtype(max_value: int) -> type[np.unsignedinteger[Any]]:
    """The smallest unsigned dtype holding ``max_value`` (at least uint16)."""
    return np.uint16 if max_value <= np.iinfo(np.uint16).max else np.uint32


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _encode_query(tokens: list[int]) -> str:
    """One character per token, as stored in marisa (``END_TOKEN`` becomes ``chr(0)``)."""
    return "".join(
        [chr(t + 1) if t < _SURROGATE_LO - 1 else chr(t + 1 + _SURROGATE_SPAN) for t in tokens]
    )


def _concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices ``starts[i] + k`` for ``k < lengths[i]``, for all i, concatenated."""
    lengths = lengths.astype(np.int64, copy=False)
    firsts = np.cumsum(lengths) - lengths
    total = int(lengths.sum())
    return np.repeat(starts - firsts, lengths) + np.arange(total, dtype=np.int64)


@dataclass
class _Keys:
    """All keys as one flat token array; key i is ``tokens[starts[i]:starts[i] + lengths[i]]``."""

    tokens: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    def ext_token(self, key: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Token at ``pos`` of the keys extended by the end marker (``pos <= length``)."""
        length = self.lengths[key]
        at_end = pos >= length
        idx = np.where(at_end, 0, self.starts[key] + np.minimum(pos, length - 1))
        return np.where(at_end, END_TOKEN, self.tokens[idx]).astype(np.int64)


def _coerce_keys(keys: Sequence[Sequence[int]]) -> _Keys:
    n = len(keys)
    if n == 0:
        raise CorpusError(
            "corpus is empty: build() got 0 keys; pass one token-id sequence per passage"
        )
    lengths = np.fromiter((len(k) for k in keys), dtype=np.int64, count=n)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise CorpusError(
            f"key {int(empty[0])} is empty ({empty.size} empty keys in all); every passage must "
            "render to at least one token (normally its text followed by EOS)"
        )
    total = int(lengths.sum())
    if all(isinstance(k, np.ndarray) for k in keys):
        bad = [i for i, k in enumerate(keys) if k.ndim != 1 or k.dtype.kind not in "iu"]
        if bad:
            k = keys[bad[0]]
            raise CorpusError(
                f"key {bad[0]} is a {k.ndim}-d array of {k.dtype}; keys must be 1-d integer "
                "token-id sequences"
            )
        if len({k.dtype for k in keys}) == 1:
            tokens = np.concatenate(keys)
        else:  # mixed integer dtypes could promote to float
            tokens = np.concatenate([np.asarray(k, dtype=np.int64) for k in keys])
    else:
        first = keys[0][0]
        if not isinstance(first, (int, np.integer)) or isinstance(first, bool):
            raise CorpusError(
                f"keys[0][0] is {first!r} of type {type(first).__name__}; keys must be sequences "
                "of integer token ids"
            )
        try:
            tokens = np.fromiter(chain.from_iterable(keys), dtype=np.int32, count=total)
        except (TypeError, ValueError, OverflowError) as exc:
            raise CorpusError(
                f"keys must be sequences of integer token ids in [0, {MAX_TOKEN_ID}]; "
                f"converting them failed: {exc}"
            ) from exc
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return _check_tokens(_Keys(tokens, starts, lengths))


def _check_tokens(keys: _Keys) -> _Keys:
    tokens = keys.tokens
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) > MAX_TOKEN_ID):
        bad = int(np.flatnonzero((tokens < 0) | (tokens > MAX_TOKEN_ID))[0])
        key = int(np.searchsorted(keys.starts, bad, side="right") - 1)
        raise CorpusError(
            f"key {key} holds token id {int(tokens[bad])}; token ids must be in "
            f"[0, {MAX_TOKEN_ID}] (the end marker {END_TOKEN} is added by the trie itself)"
        )
    keys.tokens = tokens.astype(np.int32, copy=False)  # every valid id fits; halves the copy
    return keys


def _coerce_titles(title_lengths: Sequence[int] | np.ndarray | None, keys: _Keys) -> np.ndarray:
    n = len(keys.lengths)
    if title_lengths is None:
        return np.zeros(n, dtype=np.int64)
    titles = np.asarray(title_lengths)
    if titles.shape != (n,) or (titles.size and titles.dtype.kind not in "iu"):
        raise CorpusError(
            f"title_lengths has shape {titles.shape} and dtype {titles.dtype}; it must hold one "
            f"integer per key ({n}), or be None when passages have no title"
        )
    titles = titles.astype(np.int64)
    bad = np.flatnonzero((titles < 0) | (titles > keys.lengths))
    if bad.size:
        i = int(bad[0])
        raise CorpusError(
            f"title_lengths[{i}] = {int(titles[i])} but key {i} has {int(keys.lengths[i])} "
            "tokens; a title length must be between 0 and the key's length"
        )
    return titles


def _window_words(keys: _Keys, rows: np.ndarray, col: int) -> np.ndarray:
    """Tokens ``[col, col + _WINDOW)`` of the extended keys ``rows``, packed for sorting.

    Each token becomes ``t + 1`` (the end marker and the padding become 0, so shorter keys sort
    first) and three 21-bit codes fill one uint64 word, most significant first.
    """
    n_words = _WINDOW // 3
    out = np.empty((len(rows), n_words), dtype=np.uint64)
    cols = np.arange(col, col + _WINDOW, dtype=np.int64)
    for lo in range(0, len(rows), _CHUNK_ROWS):
        chunk = rows[lo : lo + _CHUNK_ROWS]
        length = keys.lengths[chunk][:, None]
        valid = cols[None, :] < length
        idx = np.where(valid, keys.starts[chunk][:, None] + cols[None, :], 0)
        codes = np.where(valid, keys.tokens[idx] + 1, 0).astype(np.uint64)
        codes = codes.reshape(len(chunk), n_words, 3)
        out[lo : lo + len(chunk)] = (
            (codes[:, :, 0] << np.uint64(2 * _CODE_BITS))
            | (codes[:, :, 1] << np.uint64(_CODE_BITS))
            | codes[:, :, 2]
        )
    return out


def _first_diff(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row pair: whether the packed windows differ, and the first differing token."""
    neq = a != b
    differs = neq.any(axis=1)
    word = neq.argmax(axis=1)
    x = a[np.arange(len(a)), word] ^ b[np.arange(len(b)), word]
    in_word = np.where(
        x >> np.uint64(2 * _CODE_BITS) != 0, 0, np.where(x >> np.uint64(_CODE_BITS) != 0, 1, 2)
    )
    return differs, word.astype(np.int64) * 3 + in_word


def _sort_keys(keys: _Keys) -> tuple[np.ndarray, np.ndarray]:
    """Stable lexicographic order of the extended keys and the LCP of neighbours in that order.

    Sorts by windows of ``_WINDOW`` tokens; only runs tied on every window so far are sorted again
    by the next window, so the work is about the total length of the shared prefixes.
    """
    n = len(keys.lengths)
    ext_len = keys.lengths + 1
    order = np.arange(n, dtype=np.int64)
    lcp = np.zeros(max(n - 1, 0), dtype=np.int64)
    active = np.arange(n, dtype=np.int64)  # positions in `order` still to be sorted
    group = np.zeros(n, dtype=np.int64)  # tie group of each active position (non-decreasing)
    col = 0
    while active.size:
        rows = order[active]
        words = _window_words(keys, rows, col)
        sort_keys = [words[:, k] for k in range(words.shape[1] - 1, -1, -1)]
        if col:
            sort_keys.append(group)
        perm = np.lexsort(sort_keys)
        rows = rows[perm]
        words = words[perm]
        order[active] = rows
        same = group[1:] == group[:-1]
        pair = active[:-1][same]  # pair i compares order[i] and order[i + 1]
        differs, first = _first_diff(words[:-1][same], words[1:][same])
        ended = ext_len[rows[:-1][same]] <= col + _WINDOW
        lcp[pair[differs]] = col + first[differs]
        identical = ~differs & ended
        lcp[pair[identical]] = ext_len[rows[:-1][same][identical]]
        tied = pair[~differs & ~ended]
        if tied.size == 0:
            break
        active = np.unique(np.concatenate([tied, tied + 1]))
        tie_mark = np.zeros(n, dtype=bool)
        tie_mark[tied] = True
        group = np.cumsum(~tie_mark[active - 1])
        col += _WINDOW
    return order, lcp


def _sparse_min(values: np.ndarray) -> list[np.ndarray]:
    """``table[l][x] = min(values[x : x + 2**l])``."""
    table = [values]
    span = 1
    while 2 * span <= len(values):
        prev = table[-1]
        table.append(np.minimum(prev[:-span], prev[span:]))
        span *= 2
    return table


def _leaf_ranges(
    table: list[np.ndarray], n_leaves: int, anchor: np.ndarray, d: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The leaves sharing the first ``d`` tokens with leaf ``anchor``: ``[lo, hi)``.

    ``table`` is the sparse minimum table of the neighbour LCPs of the sorted cut keys; each
    query is answered by binary lifting, all queries at once.
    """
    lo = anchor.copy()
    hi = anchor.copy()  # neighbour pairs anchor .. hi - 1 share >= d tokens
    n_pairs = n_leaves - 1
    for level in range(len(table) - 1, -1, -1):
        step = 1 << level
        row = table[level]
        cand = lo - step
        ok = cand >= 0
        ok[ok] = row[cand[ok]] >= d[ok]
        lo = np.where(ok, cand, lo)
        ok = hi + step <= n_pairs
        ok[ok] = row[hi[ok]] >= d[ok]
        hi = np.where(ok, hi + step, hi)
    return lo, hi + 1


class PassageTrie:
    """Radix trie over the token ids of every passage, cut where each passage becomes unique.

    Build it with :meth:`build`, persist it with :meth:`save` / :meth:`load` (memory-mapped). A
    decoder walks it by node id with :meth:`children` (or :meth:`child_ranges` and the CSR arrays,
    vectorised), feeds edges with :meth:`edge`, and restricts it to a subset of passages with
    :meth:`allowed_leaf_counts` and :meth:`leaf_bounds` (filters never rebuild the trie).
    :meth:`lookup` and :meth:`next_tokens` resolve arbitrary token prefixes through marisa. See the
    module docstring for the layout and the end-marker and title rules.
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
        for name in _ARRAY_NAMES:
            setattr(self, name, arrays[name])
        self._marisa = marisa
        self.n_internal = len(self.internal_depth)
        self.n_nodes = len(self.child_node) + 1
        self.n_leaves = self.n_nodes - self.n_internal
        self.n_passages = len(self.leaf_passages)
        self.token_dtype = np.dtype(self.child_code.dtype)
        self._max_code = int(np.iinfo(self.token_dtype).max)
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
        title_lengths: Sequence[int] | None = None,
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
        with tqdm(
            total=6, desc="passage trie", unit="step", disable=not show_progress, leave=False
        ) as bar:
            bar.set_postfix_str("reading keys")
            data = _coerce_keys(keys)
            titles = _coerce_titles(title_lengths, data)
            bar.update(1)
            return cls._build(data, titles, bar)

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
        tokens = np.asarray(tokens)
        offsets = np.asarray(offsets, dtype=np.int64)
        if tokens.ndim != 1 or (tokens.size and tokens.dtype.kind not in "iu"):
            raise CorpusError(
                f"tokens is a {tokens.ndim}-d array of {tokens.dtype}; it must be a 1-d integer "
                "array of token ids"
            )
        if (
            offsets.ndim != 1
            or len(offsets) < 1
            or offsets[0] != 0
            or offsets[-1] != len(tokens)
            or np.any(np.diff(offsets) < 0)
        ):
            raise CorpusError(
                "offsets must be a non-decreasing 1-d array starting at 0 and ending at "
                f"len(tokens) = {len(tokens)}; got {len(offsets)} offsets"
            )
        if len(offsets) == 1:
            raise CorpusError(
                "corpus is empty: build_flat() got 0 keys; pass one token-id sequence per passage"
            )
        lengths = np.diff(offsets)
        empty = np.flatnonzero(lengths == 0)
        if empty.size:
            raise CorpusError(
                f"key {int(empty[0])} is empty ({empty.size} empty keys in all); every passage "
                "must render to at least one token (normally its text followed by EOS)"
            )
        data = _check_tokens(_Keys(tokens, offsets[:-1].copy(), lengths))
        titles = _coerce_titles(title_lengths, data)
        with tqdm(
            total=6, desc="passage trie", unit="step", disable=not show_progress, leave=False
        ) as bar:
            bar.update(1)
            return cls._build(data, titles, bar)

    @classmethod
    def _build(cls, keys: _Keys, titles: np.ndarray, bar: tqdm) -> PassageTrie:
        n = len(keys.lengths)
        ext_len = keys.lengths + 1

        # 1. Sort the keys; group identical ones into one leaf each (stable: ascending ids).
        bar.set_postfix_str("sorting keys")
        order, lcp = _sort_keys(keys)
        identical = lcp == ext_len[order[:-1]]
        group_first = np.flatnonzero(np.concatenate([[True], ~identical]))
        n_leaves = len(group_first)
        passage_start = np.append(group_first, n)
        rep = order[group_first]  # one passage per leaf, to read the leaf's key from
        passage_leaf = np.empty(n, dtype=np.int64)
        passage_leaf[order] = np.repeat(np.arange(n_leaves), np.diff(passage_start))
        bar.update(1)

        # 2. Cut each distinct key at its unique depth.
        bar.set_postfix_str("cutting keys")
        pair_lcp = lcp[group_first[1:] - 1]  # between leaf j and leaf j + 1
        cut = np.maximum(np.append(0, pair_lcp), np.append(pair_lcp, 0)) + 1
        max_depth = int(cut.max())
        lcp_dtype = np.uint16 if max_depth < np.iinfo(np.uint16).max else np.int64
        table = _sparse_min(pair_lcp.astype(lcp_dtype))
        bar.update(1)

        # 3. Nodes: root, leaves, branching points (one per neighbour pair), title ends. A node
        #    is the prefix of length d of leaf j's cut key; it is named by (its first leaf, d),
        #    so sorting those names gives DFS pre-order.
        bar.set_postfix_str("finding nodes")
        leaves = np.arange(n_leaves, dtype=np.int64)
        branch_pair = np.flatnonzero(pair_lcp > 0)
        branch_d = pair_lcp[branch_pair].astype(np.int64)
        title_leaf = passage_leaf[(titles > 0) & (titles <= cut[passage_leaf])]
        title_d = titles[(titles > 0) & (titles <= cut[passage_leaf])]
        if title_leaf.size:
            stride = max_depth + 1
            unique_td = np.unique(title_leaf * stride + title_d)
            title_leaf, title_d = unique_td // stride, unique_td % stride
        query_anchor = np.concatenate([branch_pair, title_leaf])
        query_d = np.concatenate([branch_d, title_d])
        q_lo, q_hi = _leaf_ranges(table, n_leaves, query_anchor, query_d)
        del table

        stride = max_depth + 1
        name = np.concatenate([[0], leaves * stride + cut, q_lo * stride + query_d])
        node_hi_all = np.concatenate([[n_leaves], leaves + 1, q_hi])
        names, first = np.unique(name, return_index=True)
        n_nodes = len(names)
        node_lo = names // stride
        node_d = names % stride
        node_hi = node_hi_all[first]
        del name, node_hi_all, first

        is_title_end = np.zeros(n_nodes, dtype=bool)
        n_branch = len(branch_pair)
        if title_leaf.size:
            title_names = q_lo[n_branch:] * stride + title_d
            is_title_end[np.searchsorted(names, title_names)] = True
        branch_lo = np.zeros(max(n_leaves - 1, 0), dtype=np.int64)
        branch_lo[branch_pair] = q_lo[:n_branch]
        del q_lo, q_hi, query_anchor, query_d

        # Parent: the previous node in pre-order if it starts at the same leaf, else the
        # branching node between this node's first leaf and the leaf before it.
        parent = np.full(n_nodes, -1, dtype=np.int64)
        if n_nodes > 1:
            k = np.arange(1, n_nodes)
            same_lo = node_lo[1:] == node_lo[:-1]
            parent[1:][same_lo] = k[same_lo] - 1
            other = k[~same_lo]
            pair = node_lo[other] - 1
            parent_name = branch_lo[pair] * stride + pair_lcp[pair]
            parent[other] = np.searchsorted(names, parent_name)
        del names, branch_lo
        bar.update(1)

        # 4. Renumber: internal nodes keep their pre-order, leaf j becomes n_internal + j. Edges:
        #    labels of internal nodes, children in CSR form (leaves' one-token labels live there).
        bar.set_postfix_str("labelling edges")
        n_children = np.bincount(parent[1:], minlength=n_nodes)
        is_leaf = n_children == 0
        internal = np.flatnonzero(~is_leaf)
        n_internal = len(internal)
        new_id = np.empty(n_nodes, dtype=np.int64)
        new_id[internal] = np.arange(n_internal)
        new_id[is_leaf] = n_internal + node_lo[is_leaf]
        parent_d = np.zeros(n_nodes, dtype=np.int64)
        parent_d[1:] = node_d[parent[1:]]

        old_child = np.argsort(parent[1:], kind="stable") + 1  # grouped by parent, pre-order
        child_start = np.zeros(n_internal + 1, dtype=np.int64)
        np.cumsum(n_children[internal], out=child_start[1:])
        child_token = keys.ext_token(rep[node_lo[old_child]], parent_d[old_child])
        child_node = new_id[old_child]
        del old_child

        label_len = node_d[internal] - parent_d[internal]
        label_start = np.zeros(n_internal + 1, dtype=np.int64)
        np.cumsum(label_len, out=label_start[1:])
        owner = np.repeat(internal, label_len)
        pos = np.arange(int(label_start[-1]), dtype=np.int64) - np.repeat(
            label_start[:-1] - parent_d[internal], label_len
        )
        label_token = keys.ext_token(rep[node_lo[owner]], pos)
        del owner, pos, new_id, parent, parent_d

        title_end_leaf = node_lo[is_leaf & is_title_end]  # pre-order: ascending ranks
        group_size = np.diff(passage_start)
        multi_leaf = np.flatnonzero(group_size > 1)
        multi_extra = np.zeros(len(multi_leaf) + 1, dtype=np.int64)
        np.cumsum(group_size[multi_leaf] - 1, out=multi_extra[1:])
        bar.update(1)

        # 5. marisa over the paths of internal nodes (root excluded).
        bar.set_postfix_str("building marisa")
        path_len = node_d[internal[1:]]
        path_idx = _concat_ranges(keys.starts[rep[node_lo[internal[1:]]]], path_len)
        codes = keys.tokens[path_idx] + 1
        codes[codes >= _SURROGATE_LO] += _SURROGATE_SPAN
        text = codes.astype("<u4").tobytes().decode("utf-32-le")
        ends = np.cumsum(path_len).tolist()
        starts = [0, *ends[:-1]] if ends else []
        paths = [text[a:b] for a, b in zip(starts, ends, strict=True)]
        del codes, path_idx, text
        marisa = marisa_trie.Trie(paths)
        node_of_key = np.zeros(len(marisa), dtype=np.int64)
        if paths:
            key_ids = np.fromiter(map(marisa.key_id, paths), np.int64, len(paths))
            node_of_key[key_ids] = np.arange(1, n_internal)
        del paths
        bar.update(1)

        node_dtype = _index_dtype(n_nodes)
        leaf_dtype = _index_dtype(n_leaves + 1)
        passage_dtype = _index_dtype(n + 1)
        code_dtype = _uint_dtype(int(keys.tokens.max()) + 1)
        arrays = {
            "child_start": child_start.astype(node_dtype),
            "child_code": (child_token + 1).astype(code_dtype),
            "child_node": child_node.astype(node_dtype),
            "label_start": label_start.astype(_index_dtype(int(label_start[-1]))),
            "label_code": (label_token + 1).astype(code_dtype),
            "internal_depth": node_d[internal].astype(_uint_dtype(max_depth)),
            "leaf_lo": node_lo[internal].astype(leaf_dtype),
            "leaf_hi": node_hi[internal].astype(leaf_dtype),
            "leaf_passages": order.astype(passage_dtype),
            "multi_leaf": multi_leaf.astype(leaf_dtype),
            "multi_extra": multi_extra.astype(passage_dtype),
            "is_title_end": is_title_end[internal],
            "title_end_leaf": title_end_leaf.astype(leaf_dtype),
            "node_of_key": node_of_key.astype(node_dtype),
        }
        return cls({k: _readonly(v) for k, v in arrays.items()}, marisa)

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

    def is_leaf_nodes(self, nodes: np.ndarray | Sequence[int]) -> np.ndarray:
        """:meth:`is_leaf` of every node in ``nodes`` (a bool array)."""
        return np.asarray(nodes) >= self.n_internal

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

    def children(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """First tokens (ascending, int64) and node ids (read-only view) of ``node``'s children."""
        node = int(node)
        if node >= self.n_internal:
            return np.zeros(0, dtype=np.int64), self.child_node[:0]
        a, b = self._child_start[node], self._child_start[node + 1]
        return self._tokens_of(node, a, b), self.child_node[a:b]

    def _tokens_of(self, node: int, a: int, b: int) -> np.ndarray:
        """Decoded first tokens of ``node``'s children at ``a:b`` (the root's are cached)."""
        return self._root_tokens if node == self.root else self.child_tokens(slice(a, b))

    @cached_property
    def _root_tokens(self) -> np.ndarray:
        """The root's child tokens, decoded once: its fan-out is the largest (up to the vocab)."""
        return _readonly(self.child_tokens(slice(0, int(self.child_start[1]))))

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

    def _internal_label(self, node: int) -> np.ndarray:
        return self.label_code[self._label_start[node] : self._label_start[node + 1]]

    def edge(self, node: int, first_token: int) -> list[int]:
        """The tokens fed to move into ``node`` from its parent: ``first_token`` (the token the
        mask allowed, e.g. EOS for the end marker) followed by the rest of ``node``'s label."""
        node = int(node)
        if node >= self.n_internal:
            return [int(first_token)]
        codes = self._label_code[self._label_start[node] + 1 : self._label_start[node + 1]]
        return [int(first_token), *(c - 1 for c in codes.tolist())]

    def _descend(self, node: int) -> list[int]:
        """CSR positions of the edges from the root to ``node``: O(depth in nodes) searches."""
        node = self._check_node(node)
        target = self._bounds(node)[0]
        positions: list[int] = []
        current = self.root
        while current != node:
            if current >= self.n_internal:  # pragma: no cover - ranges are nested
                raise ValueError(f"node {node} is not in this trie")
            a, b = int(self.child_start[current]), int(self.child_start[current + 1])
            _, hi = self.leaf_bounds(self.child_node[a:b])
            i = int(np.searchsorted(hi, target, side="right"))
            positions.append(a + i)
            current = int(self.child_node[a + i])
        return positions

    def label(self, node: int) -> np.ndarray:
        """The edge label of ``node`` (int64): the token run from its parent to it; empty for the
        root. A leaf's label is one token, read from its parent (O(depth in nodes))."""
        node = self._check_node(node)
        if node < self.n_internal:
            return np.subtract(self._internal_label(node), 1, dtype=np.int64)
        return self.child_tokens(self._descend(node)[-1:])

    def depth_of(self, node: int) -> int:
        """Tokens from the root to the end of ``node``'s label (a leaf's: its unique depth)."""
        node = self._check_node(node)
        if node < self.n_internal:
            return int(self.internal_depth[node])
        position = self._descend(node)[-1]
        parent = int(np.searchsorted(self.child_start, position, side="right")) - 1
        return int(self.internal_depth[parent]) + 1

    def leaf_depths(self) -> np.ndarray:
        """The depth of every leaf, by rank (int64): the length of its cut key. O(n_nodes)."""
        counts = np.diff(self.child_start)
        parent = np.repeat(np.arange(self.n_internal, dtype=np.int64), counts)
        leaf = self.child_node >= self.n_internal
        depths = np.empty(self.n_leaves, dtype=np.int64)
        depths[self.child_node[leaf] - self.n_internal] = self.internal_depth[parent[leaf]]
        return depths + 1

    def leaf_node(self, rank: int) -> int:
        """The node id of the leaf of rank ``rank``."""
        if not 0 <= int(rank) < self.n_leaves:
            raise ValueError(f"leaf rank {rank} is outside [0, {self.n_leaves})")
        return self.n_internal + int(rank)

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

    def title_end_nodes(self) -> np.ndarray:
        """Every title-end node id, ascending (int64)."""
        return np.concatenate(
            [
                np.flatnonzero(self.is_title_end),
                self.title_end_leaf.astype(np.int64) + self.n_internal,
            ]
        )

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
        dtype = _index_dtype(self.n_leaves + 1)
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
                has_allowed[_concat_ranges(first, size)], np.cumsum(size) - size
            )
            has_allowed = np.delete(has_allowed, _concat_ranges(first + 1, size - 1))
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

    def _find(self, prefix: Sequence[int] | np.ndarray) -> tuple[int, int, int, int] | None:
        """Walk ``prefix``: (node, tokens of its label consumed, its label's length, prefix tokens
        consumed).

        The last value is smaller than ``len(prefix)`` only when the prefix runs past a leaf
        (past the cut, where the trie stores nothing). None if the prefix leaves the trie.
        """
        toks = prefix.tolist() if isinstance(prefix, np.ndarray) else list(prefix)
        m = len(toks)
        if m == 0:
            return 0, 0, 0, 0
        try:
            text = _encode_query(toks)
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
            return node, length, length, m
        # One child search; the query ends inside that child's label or runs past a leaf.
        child = self._child(node, toks[d])
        if child < 0:
            return None
        if child >= self.n_internal:  # a leaf: one token
            return child, 1, 1, d + 1
        start = self._label_start[child]
        length = self._label_start[child + 1] - start
        take = min(m - d, length)
        if take > 1 and self._label_code[start + 1 : start + take].tolist() != [
            t + 1 for t in toks[d + 1 : d + take]
        ]:
            return None
        if m - d <= length:
            return child, m - d, length, m
        return None  # unreachable: marisa would have matched the internal child's path

    def lookup(self, prefix: Sequence[int] | np.ndarray) -> tuple[int, int]:
        """``(node, offset)``: the node whose label holds the end of ``prefix``, and how many
        tokens of that label the prefix consumes (``offset == len(label(node))`` when it ends
        exactly at the node; the empty prefix gives ``(root, 0)``).

        Costs one marisa prefix search over the prefix (C) plus one child search. Raises
        ``KeyError`` if no stored key starts with ``prefix``, including a prefix that runs past
        a leaf, i.e. past where the trie cuts the key.
        """
        found = self._find(prefix)
        if found is None or found[3] != len(prefix):
            raise KeyError(f"token prefix not in the trie: {list(prefix)[:20]!r}")
        return found[0], found[1]

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
        if found is None or found[3] != len(prefix) or found[0] >= self.n_internal:
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
        if found is None or found[0] < self.n_internal:
            return self.leaf_passages[:0]
        return self.passages_at(found[0])

    def path(self, node: int) -> np.ndarray:
        """The token path (int64) from the root to the end of ``node`` (a leaf's path is its cut
        key). Descends from the root along ``node``'s leaf range: O(depth in nodes) searches."""
        parts = [
            self.edge(int(self.child_node[p]), int(self.child_tokens(p)))
            for p in self._descend(node)
        ]
        return np.asarray(list(chain.from_iterable(parts)), dtype=np.int64)

    # ------------------------------------------------------------------ persistence

    def array_nbytes(self) -> dict[str, int]:
        """Bytes held by each stored array (the derived views are not counted)."""
        return {name: int(getattr(self, name).nbytes) for name in _ARRAY_NAMES}

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (not counting the marisa trie)."""
        return sum(self.array_nbytes().values())

    def save(self, folder: str | Path) -> Path:
        """Write the trie into ``folder`` (created if needed); the caller handles atomicity."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in _ARRAY_NAMES:
            np.save(folder / f"{name}.npy", np.ascontiguousarray(getattr(self, name)))
        self._marisa.save(str(folder / MARISA_FILE))
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "library_version": _library_version(),
            "n_nodes": self.n_nodes,
            "n_internal": self.n_internal,
            "n_leaves": self.n_leaves,
            "n_passages": self.n_passages,
            "n_marisa_keys": len(self._marisa),
            "end_token": self.end_token,
            "token_code": TOKEN_CODE,
            "token_dtype": self.token_dtype.str,
            "marisa_token_encoding": "chr(t + 1), plus 0x800 from U+D800 on",
            "arrays": {
                name: {
                    "dtype": np.dtype(getattr(self, name).dtype).str,
                    "shape": list(getattr(self, name).shape),
                }
                for name in _ARRAY_NAMES
            },
        }
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> PassageTrie:
        """Read a trie written by :meth:`save`; arrays and marisa are memory-mapped by default.

        Raises ``ArtifactError`` naming the file that is missing, unreadable or inconsistent.
        """
        folder = Path(folder)
        manifest_path = folder / MANIFEST_FILE
        if not manifest_path.is_file():
            raise ArtifactError(
                f"{manifest_path} is missing: {folder} is not a saved PassageTrie (write one with "
                "PassageTrie.save)"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
            version = int(manifest["format_version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{manifest_path} is corrupt ({exc}); rebuild the trie") from exc
        if manifest.get("format") != FORMAT_NAME or version != FORMAT_VERSION:
            raise ArtifactError(
                f"{manifest_path} has format {manifest.get('format')!r} version {version}; this "
                f"library reads {FORMAT_NAME!r} version {FORMAT_VERSION} only (rebuild the trie "
                "with this version, or use the selfretrieval-integrations version that wrote it)"
            )
        try:
            counts = {
                k: int(manifest[k]) for k in ("n_nodes", "n_internal", "n_leaves", "n_passages")
            }
            n_keys = int(manifest["n_marisa_keys"])
            end_token = int(manifest["end_token"])
            token_dtype = np.dtype(manifest["token_dtype"])
            token_code = manifest["token_code"]
            specs = manifest["arrays"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{manifest_path} is corrupt ({exc}); rebuild the trie") from exc
        if (
            end_token != END_TOKEN
            or token_code != TOKEN_CODE
            or token_dtype not in (np.dtype(np.uint16), np.dtype(np.uint32))
            or counts["n_internal"] + counts["n_leaves"] != counts["n_nodes"]
        ):
            raise ArtifactError(
                f"{manifest_path} records end token {end_token}, token code {token_code!r} as "
                f"{token_dtype} and {counts}; this library writes {END_TOKEN}, {TOKEN_CODE!r} as "
                "uint16 or uint32 and n_internal + n_leaves = n_nodes; rebuild the trie"
            )
        n_int = counts["n_internal"]
        expected = {
            "child_start": n_int + 1,
            "child_node": counts["n_nodes"] - 1,
            "child_code": counts["n_nodes"] - 1,
            "label_start": n_int + 1,
            "internal_depth": n_int,
            "leaf_lo": n_int,
            "leaf_hi": n_int,
            "is_title_end": n_int,
            "leaf_passages": counts["n_passages"],
            "node_of_key": n_keys,
        }
        arrays: dict[str, np.ndarray] = {}
        for name in _ARRAY_NAMES:
            path = folder / f"{name}.npy"
            if not path.is_file():
                raise ArtifactError(f"{path} is missing; the saved trie is incomplete, rebuild it")
            try:
                array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise ArtifactError(
                    f"{path} is corrupt or truncated ({exc}); rebuild the trie"
                ) from exc
            spec = specs.get(name, {})
            want_len = expected.get(name)
            if (
                array.ndim != 1
                or (want_len is not None and len(array) != want_len)
                or list(array.shape) != spec.get("shape")
                or np.dtype(array.dtype).str != spec.get("dtype")
                or (name.endswith("_code") and array.dtype != token_dtype)
            ):
                raise ArtifactError(
                    f"{path} holds {array.dtype} {array.shape} but {manifest_path} expects "
                    f"{spec.get('dtype')} {spec.get('shape')}; the trie files do not belong "
                    "together, rebuild the trie"
                )
            # A plain ndarray view of the memory map: same pages, cheaper to index than np.memmap.
            arrays[name] = _readonly(np.asarray(array))
        for name, table, ends_at in (
            ("label_code", "label_start", len(arrays["label_code"])),
            ("child_node", "child_start", len(arrays["child_node"])),
            ("leaf_passages", "multi_extra", counts["n_passages"] - counts["n_leaves"]),
        ):
            if len(arrays[table]) == 0 or int(arrays[table][-1]) != ends_at:
                raise ArtifactError(
                    f"{folder / (name + '.npy')} does not match {table}.npy; rebuild the trie"
                )
        marisa_path = folder / MARISA_FILE
        if not marisa_path.is_file():
            raise ArtifactError(
                f"{marisa_path} is missing; the saved trie is incomplete, rebuild it"
            )
        marisa = marisa_trie.Trie()
        try:
            if mmap:
                marisa.mmap(str(marisa_path))
            else:
                marisa.load(str(marisa_path))
        except Exception as exc:  # marisa raises plain RuntimeError/MemoryError on bad files
            raise ArtifactError(
                f"{marisa_path} is corrupt or truncated ({exc}); rebuild the trie"
            ) from exc
        if len(marisa) != n_keys:
            raise ArtifactError(
                f"{marisa_path} holds {len(marisa)} paths but {manifest_path} expects {n_keys}; "
                "rebuild the trie"
            )
        return cls(arrays, marisa)


def _library_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return "unknown"
    try:
        return version("selfretrieval-integrations")
    except PackageNotFoundError:
        return "unknown"
