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
    inside the stored cut, even if the node has a single child, and ``is_title_end`` marks it.
    ``is_title_end[n]`` means: for at least one passage below ``n``, the title segment ends
    exactly at the end of ``n``'s label. A leaf is marked when a title ends exactly at the cut. A
    title longer than the cut (the title alone identifies the passage) has no marked node.

Array layout (all public, read-only; node 0 is the root, nodes are numbered in DFS pre-order with
children visited by ascending first token)
    ``child_start`` (n_nodes + 1), ``child_token``, ``child_node``: CSR children; the children of
        ``n`` are ``child_node[child_start[n]:child_start[n + 1]]``, keyed by the first token of
        their label, ascending.
    ``label_start``, ``label_len``, ``labels``: the edge label of ``n`` (the tokens between its
        parent and ``n``, first token included) is ``labels[label_start[n]:][:label_len[n]]``;
        the root's label is empty. Every leaf's label is exactly one token.
    ``depth``: tokens from the root to the end of ``n``'s label.
    ``leaf_rank`` (-1 for internal nodes), ``leaf_lo``, ``leaf_hi``: leaves are ranked in DFS order;
        node ``n`` covers the leaves ``[leaf_lo[n], leaf_hi[n])``.
    ``passage_start`` (n_leaves + 1), ``leaf_passages``: the passages of the leaf with rank ``r``
        are ``leaf_passages[passage_start[r]:passage_start[r + 1]]`` (ascending); so the passages
        below any node are one contiguous slice.
    ``passage_leaf``: the leaf rank of each passage.
    ``is_title_end``: see Titles.

Filters
    There is no ``restrict``: a subset of passages (a filter, an access list, deleted documents) is
    applied without rebuilding, through :meth:`PassageTrie.allowed_leaf_counts`. A node may be
    taken iff ``counts[leaf_hi[n]] - counts[leaf_lo[n]] > 0``, i.e. it has an allowed passage below.

Files written by :meth:`PassageTrie.save`
    ``trie.json`` (format version, counts, end marker, array dtypes and shapes), one ``<name>.npy``
    per array, ``node_of_key.npy`` and ``trie.marisa``. The marisa trie holds the full token path
    of every internal node except the root (one character per token: ``chr(t + 1)``, shifted past
    the surrogate range); ``node_of_key`` maps its key ids to node ids. Leaves are not stored there:
    each leaf is one token below its parent, so a look-up reaches it with one child search.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
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
FORMAT_VERSION = 1
MANIFEST_FILE = "trie.json"
MARISA_FILE = "trie.marisa"

_ARRAY_NAMES: tuple[str, ...] = (
    "child_start",
    "child_token",
    "child_node",
    "label_start",
    "label_len",
    "labels",
    "depth",
    "leaf_lo",
    "leaf_hi",
    "leaf_rank",
    "passage_start",
    "leaf_passages",
    "passage_leaf",
    "is_title_end",
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
    decoder walks it by node id with :meth:`children` (or the CSR arrays directly), reads edge
    runs with :meth:`label`, and restricts it to a subset of passages with
    :meth:`allowed_leaf_counts` (filters never rebuild the trie). :meth:`lookup` and
    :meth:`next_tokens` resolve arbitrary token prefixes through marisa. See the module docstring
    for the array layout and the end-marker and title rules.
    """

    root: ClassVar[int] = 0

    child_start: np.ndarray
    child_token: np.ndarray
    child_node: np.ndarray
    label_start: np.ndarray
    label_len: np.ndarray
    labels: np.ndarray
    depth: np.ndarray
    leaf_lo: np.ndarray
    leaf_hi: np.ndarray
    leaf_rank: np.ndarray
    passage_start: np.ndarray
    leaf_passages: np.ndarray
    passage_leaf: np.ndarray
    is_title_end: np.ndarray
    node_of_key: np.ndarray

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        marisa: marisa_trie.Trie,
        *,
        end_token: int = END_TOKEN,
    ) -> None:
        """Wrap arrays made by :meth:`build` or read by :meth:`load`; not meant to be called."""
        for name in _ARRAY_NAMES:
            setattr(self, name, arrays[name])
        self._marisa = marisa
        self.end_token = int(end_token)
        self.n_nodes = len(self.depth)
        self.n_leaves = len(self.passage_start) - 1
        self.n_passages = len(self.passage_leaf)

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

        # 4. Edges: labels, children in CSR form, leaves.
        bar.set_postfix_str("labelling edges")
        parent_d = np.zeros(n_nodes, dtype=np.int64)
        parent_d[1:] = node_d[parent[1:]]
        label_len = node_d - parent_d
        label_start = np.zeros(n_nodes, dtype=np.int64)
        np.cumsum(label_len[:-1], out=label_start[1:])
        n_labels = int(label_len.sum())
        owner = np.repeat(np.arange(n_nodes, dtype=np.int64), label_len)
        pos = np.arange(n_labels, dtype=np.int64) - label_start[owner] + parent_d[owner]
        labels = keys.ext_token(rep[node_lo[owner]], pos).astype(np.int32)
        del owner, pos

        child_node = np.argsort(parent[1:], kind="stable") + 1
        n_children = np.bincount(parent[1:], minlength=n_nodes)
        child_start = np.zeros(n_nodes + 1, dtype=np.int64)
        np.cumsum(n_children, out=child_start[1:])
        child_token = labels[label_start[child_node]]
        is_leaf = n_children == 0
        leaf_rank = np.where(is_leaf, node_lo, -1)
        bar.update(1)

        # 5. marisa over the paths of internal nodes (root excluded).
        bar.set_postfix_str("building marisa")
        internal = np.flatnonzero(~is_leaf)[1:]
        path_len = node_d[internal]
        path_idx = _concat_ranges(keys.starts[rep[node_lo[internal]]], path_len)
        codes = keys.tokens[path_idx] + 1
        codes[codes >= _SURROGATE_LO] += _SURROGATE_SPAN
        text = codes.astype("<u4").tobytes().decode("utf-32-le")
        ends = np.cumsum(path_len).tolist()
        starts = [0, *ends[:-1]] if ends else []
        paths = [text[a:b] for a, b in zip(starts, ends, strict=True)]
        del codes, path_idx, text
        marisa = marisa_trie.Trie(paths)
        node_of_key = np.zeros(len(marisa), dtype=np.int32)
        if paths:
            node_of_key[np.fromiter(map(marisa.key_id, paths), np.int64, len(paths))] = internal
        del paths
        bar.update(1)

        node_dtype = _index_dtype(n_nodes)
        leaf_dtype = _index_dtype(n_leaves + 1)
        passage_dtype = _index_dtype(n + 1)
        arrays = {
            "child_start": child_start.astype(node_dtype),
            "child_token": child_token.astype(np.int32),
            "child_node": child_node.astype(node_dtype),
            "label_start": label_start.astype(_index_dtype(n_labels)),
            "label_len": label_len.astype(np.int32),
            "labels": labels,
            "depth": node_d.astype(np.int32),
            "leaf_lo": node_lo.astype(leaf_dtype),
            "leaf_hi": node_hi.astype(leaf_dtype),
            "leaf_rank": leaf_rank.astype(leaf_dtype),
            "passage_start": passage_start.astype(passage_dtype),
            "leaf_passages": order.astype(passage_dtype),
            "passage_leaf": passage_leaf.astype(leaf_dtype),
            "is_title_end": is_title_end,
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

    def children(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """First tokens (ascending) and node ids of the children of ``node`` (read-only views)."""
        a, b = int(self.child_start[node]), int(self.child_start[node + 1])
        return self.child_token[a:b], self.child_node[a:b]

    def label(self, node: int) -> np.ndarray:
        """The edge label of ``node``: the token run from its parent to it (empty for the root)."""
        start = int(self.label_start[node])
        return self.labels[start : start + int(self.label_len[node])]

    def is_leaf(self, node: int) -> bool:
        """Whether ``node`` has no children (it then identifies one distinct key)."""
        return bool(self.child_start[node + 1] == self.child_start[node])

    def passages_at(self, node: int) -> np.ndarray:
        """Passage indices of a leaf, or of every leaf below an internal node (read-only view)."""
        a = int(self.passage_start[int(self.leaf_lo[node])])
        b = int(self.passage_start[int(self.leaf_hi[node])])
        return self.leaf_passages[a:b]

    def allowed_leaf_counts(self, passage_mask: np.ndarray | None) -> np.ndarray:
        """Prefix sums over leaves of "the leaf holds at least one allowed passage".

        Returns ``counts`` of length ``n_leaves + 1``; node ``n`` is allowed iff
        ``counts[leaf_hi[n]] - counts[leaf_lo[n]] > 0``. ``passage_mask`` is a boolean array with
        one entry per passage; None allows every passage. This is how filters restrict the trie
        to a subset of passages without rebuilding it. Cost: O(n_passages).
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
        has_allowed = np.zeros(self.n_leaves, dtype=bool)
        has_allowed[self.passage_leaf[mask]] = True
        counts = np.zeros(self.n_leaves + 1, dtype=dtype)
        np.cumsum(has_allowed, out=counts[1:])
        return counts

    def count_allowed(self, node: int, counts: np.ndarray) -> int:
        """Number of allowed leaves below ``node`` (``counts`` from :meth:`allowed_leaf_counts`)."""
        return int(counts[int(self.leaf_hi[node])] - counts[int(self.leaf_lo[node])])

    # ------------------------------------------------------------------ prefix look-ups

    def _child(self, node: int, token: int) -> int:
        """The child of ``node`` whose label starts with ``token``, or -1."""
        a, b = int(self.child_start[node]), int(self.child_start[node + 1])
        tokens = self.child_token[a:b]
        i = int(tokens.searchsorted(token))
        if i < b - a and int(tokens[i]) == token:
            return int(self.child_node[a + i])
        return -1

    def _find(self, prefix: Sequence[int] | np.ndarray) -> tuple[int, int, int] | None:
        """Walk ``prefix``: (node, tokens of its label consumed, prefix tokens consumed).

        The third value is smaller than ``len(prefix)`` only when the prefix runs past a leaf
        (past the cut, where the trie stores nothing). None if the prefix leaves the trie.
        """
        toks = prefix.tolist() if isinstance(prefix, np.ndarray) else list(prefix)
        m = len(toks)
        if m == 0:
            return 0, 0, 0
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
        node = int(self.node_of_key[key]) if key >= 0 else 0
        d = int(self.depth[node])
        if d == m:
            return node, int(self.label_len[node]), m
        # One child search; the query ends inside that child's label or runs past a leaf.
        child = self._child(node, toks[d])
        if child < 0:
            return None
        length = int(self.label_len[child])
        rest = m - d
        if length > 1:
            start = int(self.label_start[child])
            take = min(rest, length)
            if self.labels[start + 1 : start + take].tolist() != toks[d + 1 : d + take]:
                return None
        if rest <= length:
            return child, rest, m
        if self.child_start[child + 1] == self.child_start[child]:
            return child, length, d + length
        return None  # unreachable: marisa would have matched the internal child's path

    def lookup(self, prefix: Sequence[int] | np.ndarray) -> tuple[int, int]:
        """``(node, offset)``: the node whose label holds the end of ``prefix``, and how many
        tokens of that label the prefix consumes (``offset == label_len[node]`` when it ends
        exactly at the node; the empty prefix gives ``(root, 0)``).

        Costs one marisa prefix search over the prefix (C) plus one child search. Raises
        ``KeyError`` if no stored key starts with ``prefix``, including a prefix that runs past
        a leaf, i.e. past where the trie cuts the key.
        """
        found = self._find(prefix)
        if found is None or found[2] != len(prefix):
            raise KeyError(f"token prefix not in the trie: {list(prefix)[:20]!r}")
        return found[0], found[1]

    def next_tokens(
        self,
        prefix: Sequence[int] | np.ndarray,
        passage_mask: np.ndarray | None = None,
        *,
        allowed_counts: np.ndarray | None = None,
    ) -> np.ndarray:
        """The tokens allowed after ``prefix`` (ascending; may include ``end_token``).

        Empty if the prefix is complete (it reached a leaf), is not in the trie, or has no
        allowed passage below it. ``passage_mask`` (one bool per passage) restricts the trie
        to a subset; for repeated calls pass ``allowed_counts=allowed_leaf_counts(mask)``
        instead, which skips the O(n_passages) preparation.
        """
        found = self._find(prefix)
        if found is None or found[2] != len(prefix):
            return np.zeros(0, dtype=self.child_token.dtype)
        node, offset, _ = found
        counts = allowed_counts
        if counts is None and passage_mask is not None:
            counts = self.allowed_leaf_counts(passage_mask)
        if offset < int(self.label_len[node]):
            if counts is not None and self.count_allowed(node, counts) == 0:
                return np.zeros(0, dtype=self.labels.dtype)
            start = int(self.label_start[node]) + offset
            return self.labels[start : start + 1]
        tokens, nodes = self.children(node)
        if counts is None or tokens.size == 0:
            return tokens
        keep = counts[self.leaf_hi[nodes]] - counts[self.leaf_lo[nodes]] > 0
        return tokens[keep]

    def passage_ids_for_prefix(self, prefix: Sequence[int] | np.ndarray) -> np.ndarray:
        """Passages identified by ``prefix``: those of the leaf it reaches, else empty.

        Empty when the prefix is ambiguous (it stops above a leaf) or not in the trie. Tokens
        of ``prefix`` past the leaf (past the cut) are not checked: the trie does not store them,
        so compare with the corpus if the whole text must match. A key that ends where another
        continues (see the end marker) is identified by ``prefix + [end_token]``.
        """
        found = self._find(prefix)
        if found is None:
            return np.zeros(0, dtype=self.leaf_passages.dtype)
        node, offset, _ = found
        if not self.is_leaf(node) or offset < int(self.label_len[node]):
            return np.zeros(0, dtype=self.leaf_passages.dtype)
        return self.passages_at(node)

    def path(self, node: int) -> np.ndarray:
        """The token path from the root to the end of ``node`` (a leaf's path is its cut key).

        Descends from the root along ``node``'s leaf range: O(depth in nodes) child searches.
        """
        node = int(node)
        target_lo, target_depth = int(self.leaf_lo[node]), int(self.depth[node])
        parts: list[np.ndarray] = []
        current = 0
        while current != node:
            if int(self.depth[current]) >= target_depth:
                raise ValueError(f"node {node} is not in this trie")  # pragma: no cover
            a, b = int(self.child_start[current]), int(self.child_start[current + 1])
            kids = self.child_node[a:b]
            current = int(kids[int(np.searchsorted(self.leaf_hi[kids], target_lo, side="right"))])
            parts.append(self.label(current))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=self.labels.dtype)

    # ------------------------------------------------------------------ persistence

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (not counting the marisa trie)."""
        return sum(int(getattr(self, name).nbytes) for name in _ARRAY_NAMES)

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
            "n_leaves": self.n_leaves,
            "n_passages": self.n_passages,
            "n_marisa_keys": len(self._marisa),
            "end_token": self.end_token,
            "token_encoding": "marisa keys: chr(t + 1), plus 0x800 from U+D800 on",
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
            counts = {k: int(manifest[k]) for k in ("n_nodes", "n_leaves", "n_passages")}
            n_keys = int(manifest["n_marisa_keys"])
            end_token = int(manifest["end_token"])
            specs = manifest["arrays"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{manifest_path} is corrupt ({exc}); rebuild the trie") from exc
        if manifest.get("format") != FORMAT_NAME or version > FORMAT_VERSION:
            raise ArtifactError(
                f"{manifest_path} has format {manifest.get('format')!r} version {version}; this "
                f"library reads {FORMAT_NAME!r} up to version {FORMAT_VERSION} (upgrade "
                "selfretrieval-integrations or rebuild the trie)"
            )
        expected_len = {
            "child_start": counts["n_nodes"] + 1,
            "child_token": counts["n_nodes"] - 1,
            "child_node": counts["n_nodes"] - 1,
            "label_start": counts["n_nodes"],
            "label_len": counts["n_nodes"],
            "depth": counts["n_nodes"],
            "leaf_lo": counts["n_nodes"],
            "leaf_hi": counts["n_nodes"],
            "leaf_rank": counts["n_nodes"],
            "is_title_end": counts["n_nodes"],
            "passage_start": counts["n_leaves"] + 1,
            "leaf_passages": counts["n_passages"],
            "passage_leaf": counts["n_passages"],
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
            want_len = expected_len.get(name)
            if (
                array.ndim != 1
                or (want_len is not None and len(array) != want_len)
                or list(array.shape) != spec.get("shape")
                or np.dtype(array.dtype).str != spec.get("dtype")
            ):
                raise ArtifactError(
                    f"{path} holds {array.dtype} {array.shape} but {manifest_path} expects "
                    f"{spec.get('dtype')} {spec.get('shape')}; the trie files do not belong "
                    "together, rebuild the trie"
                )
            # A plain ndarray view of the memory map: same pages, cheaper to index than np.memmap.
            arrays[name] = _readonly(np.asarray(array))
        if int(arrays["labels"].shape[0]) != int(np.sum(arrays["label_len"], dtype=np.int64)):
            raise ArtifactError(
                f"{folder / 'labels.npy'} does not match label_len.npy; rebuild the trie"
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
        return cls(arrays, marisa, end_token=end_token)


def _library_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return "unknown"
    try:
        return version("selfretrieval-integrations")
    except PackageNotFoundError:
        return "unknown"
