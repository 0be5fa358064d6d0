"""The passage trie's arrays and token codes, shared by its builder, runtime and file format.

Array layout (all read-only; ``n_int = n_internal``)
    ``child_start`` (n_int + 1), ``child_code``, ``child_node`` (n_nodes - 1): CSR children; the
        children of internal node ``n`` are at positions ``child_start[n]:child_start[n + 1]``,
        keyed by the first token of their label, ascending.
    Token codes: ``child_code`` and ``label_code`` hold ``token + 1`` (the end marker is 0, so it
        sorts first) as uint16 when every token id is below 65535, else uint32; the dtype is
        recorded in ``trie.json``.
    ``label_start`` (n_int + 1), ``label_code``: the edge label of internal node ``n`` (the tokens
        between its parent and ``n``, first token included) is
        ``label_code[label_start[n]:label_start[n + 1]]``; the root's label is empty.
    ``internal_depth`` (n_int): tokens from the root to the end of ``n``'s label.
    ``leaf_lo``, ``leaf_hi`` (n_int): internal node ``n`` covers the leaves ``[leaf_lo[n],
        leaf_hi[n])``.
    ``leaf_passages`` (n_passages): passage indices grouped by leaf rank, ascending within a leaf,
        so the passages below any node are one contiguous slice. Almost every leaf holds one
        passage; ``multi_leaf`` (ascending ranks of the leaves holding several) and ``multi_extra``
        (``multi_extra[i]``: passages beyond the first in ``multi_leaf[:i]``) locate the others:
        the passages of leaf ``r`` start at ``r + multi_extra[searchsorted(multi_leaf, r)]``.
    ``is_title_end`` (n_int, bool) and ``title_end_leaf`` (ascending leaf ranks): the title ends.
    ``node_of_key``: node id of each marisa key id (see below).
    Nothing is stored per passage beyond ``leaf_passages``; the rest is derived on request.

Marisa
    The marisa trie holds the full token path of every internal node except the root, one
    character per token: ``chr(t + 1)``, shifted past the surrogate range. Leaves are not stored
    there: each leaf is one token below its parent, so a look-up reaches it with one child search.
"""

from __future__ import annotations

from typing import Any

import marisa_trie
import numpy as np

END_TOKEN = -1
"""The edge token that ends a key which is a proper prefix of another key."""

_SURROGATE_LO = 0xD800
_SURROGATE_SPAN = 0x800
MAX_TOKEN_ID = 0x10FFFF - 1 - _SURROGATE_SPAN
"""The largest token id the trie can hold (one unicode character per token in marisa)."""

ARRAY_NAMES: tuple[str, ...] = (
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
"""Every array of a trie, in the order they are saved."""

TrieParts = tuple[dict[str, np.ndarray], marisa_trie.Trie]
"""What a ``PassageTrie`` is made of, as built or read: its arrays by name and its marisa trie."""


def index_dtype(max_value: int) -> type[np.signedinteger[Any]]:
    """int32 when every value fits, else int64."""
    return np.int32 if max_value < np.iinfo(np.int32).max else np.int64


def uint_dtype(max_value: int) -> type[np.unsignedinteger[Any]]:
    """The smallest unsigned dtype holding ``max_value`` (at least uint16)."""
    return np.uint16 if max_value <= np.iinfo(np.uint16).max else np.uint32


def readonly(array: np.ndarray) -> np.ndarray:
    """``array``, made read-only in place: a trie's arrays are shared and never change."""
    array.flags.writeable = False
    return array


def marisa_query(tokens: list[int]) -> str:
    """One character per token, as stored in marisa (``END_TOKEN`` becomes ``chr(0)``)."""
    return "".join(
        [chr(t + 1) if t < _SURROGATE_LO - 1 else chr(t + 1 + _SURROGATE_SPAN) for t in tokens]
    )


def marisa_text(tokens: np.ndarray) -> str:
    """:func:`marisa_query` of many token ids at once (valid ids only, no end marker)."""
    codes = tokens + 1
    codes[codes >= _SURROGATE_LO] += _SURROGATE_SPAN
    return codes.astype("<u4").tobytes().decode("utf-32-le")


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices ``starts[i] + k`` for ``k < lengths[i]``, for all i, concatenated (int64).

    Gathers many slices of one array with a single fancy index instead of a Python loop.
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths).astype(np.int64, copy=False)
    firsts = np.cumsum(lengths) - lengths
    total = int(lengths.sum())
    return np.repeat(starts - firsts, lengths) + np.arange(total, dtype=np.int64)
