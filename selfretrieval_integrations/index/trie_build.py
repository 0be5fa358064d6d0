"""The vectorised builder of the passage trie: token-id keys in, the trie's arrays and marisa out.

Every step is numpy over all keys at once, with no Python loop per key, so the build scales to
millions of passages:

1. Sort the keys (extended by the end marker) by windows of ``_WINDOW`` tokens, re-sorting only the
   runs still tied, which also gives the longest common prefix (LCP) of neighbours.
2. Cut each distinct key at its unique depth: one more than its larger LCP with a neighbour.
3. Name every node by (its first leaf, its depth): the root, the leaves, one branching point per
   neighbour pair and the title ends. Sorting the names gives DFS pre-order; a sparse-minimum table
   over the LCPs gives each node's leaf range.
4. Renumber and lay out the edges (see :mod:`.trie_layout`), and index internal paths in marisa.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import marisa_trie
import numpy as np
from tqdm.auto import tqdm

from selfretrieval_integrations.errors import CorpusError

from .trie_layout import (
    END_TOKEN,
    MAX_TOKEN_ID,
    TrieParts,
    concat_ranges,
    index_dtype,
    marisa_text,
    readonly,
    uint_dtype,
)

__all__ = ["build_from_flat", "build_from_keys"]

# Rows per chunk when gathering token windows during the sort (bounds temporary memory).
_CHUNK_ROWS = 1 << 16
# Tokens compared per sorting round; packed three per uint64 word (21 bits each).
_WINDOW = 18
_CODE_BITS = 21


def build_from_keys(
    keys: Sequence[Sequence[int]],
    title_lengths: Sequence[int] | np.ndarray | None = None,
    *,
    show_progress: bool = False,
) -> TrieParts:
    """The arrays and marisa trie of :meth:`PassageTrie.build` (which documents the arguments)."""
    with tqdm(
        total=6, desc="passage trie", unit="step", disable=not show_progress, leave=False
    ) as bar:
        bar.set_postfix_str("reading keys")
        data = _coerce_keys(keys)
        titles = _coerce_titles(title_lengths, data)
        bar.update(1)
        return _build(data, titles, bar)


def build_from_flat(
    tokens: np.ndarray,
    offsets: np.ndarray,
    title_lengths: Sequence[int] | np.ndarray | None = None,
    *,
    show_progress: bool = False,
) -> TrieParts:
    """The arrays and marisa trie of :meth:`PassageTrie.build_flat`: key i is
    ``tokens[offsets[i]:offsets[i + 1]]``."""
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
        return _build(data, titles, bar)


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


def _build(keys: _Keys, titles: np.ndarray, bar: tqdm) -> TrieParts:
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
    path_idx = concat_ranges(keys.starts[rep[node_lo[internal[1:]]]], path_len)
    text = marisa_text(keys.tokens[path_idx])
    ends = np.cumsum(path_len).tolist()
    starts = [0, *ends[:-1]] if ends else []
    paths = [text[a:b] for a, b in zip(starts, ends, strict=True)]
    del path_idx, text
    marisa = marisa_trie.Trie(paths)
    node_of_key = np.zeros(len(marisa), dtype=np.int64)
    if paths:
        key_ids = np.fromiter(map(marisa.key_id, paths), np.int64, len(paths))
        node_of_key[key_ids] = np.arange(1, n_internal)
    del paths
    bar.update(1)

    node_dtype = index_dtype(n_nodes)
    leaf_dtype = index_dtype(n_leaves + 1)
    passage_dtype = index_dtype(n + 1)
    code_dtype = uint_dtype(int(keys.tokens.max()) + 1)
    arrays = {
        "child_start": child_start.astype(node_dtype),
        "child_code": (child_token + 1).astype(code_dtype),
        "child_node": child_node.astype(node_dtype),
        "label_start": label_start.astype(index_dtype(int(label_start[-1]))),
        "label_code": (label_token + 1).astype(code_dtype),
        "internal_depth": node_d[internal].astype(uint_dtype(max_depth)),
        "leaf_lo": node_lo[internal].astype(leaf_dtype),
        "leaf_hi": node_hi[internal].astype(leaf_dtype),
        "leaf_passages": order.astype(passage_dtype),
        "multi_leaf": multi_leaf.astype(leaf_dtype),
        "multi_extra": multi_extra.astype(passage_dtype),
        "is_title_end": is_title_end[internal],
        "title_end_leaf": title_end_leaf.astype(leaf_dtype),
        "node_of_key": node_of_key.astype(node_dtype),
    }
    return {k: readonly(v) for k, v in arrays.items()}, marisa
