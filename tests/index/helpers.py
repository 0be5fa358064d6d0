"""Node accessors the tests walk the trie with, built on ``PassageTrie``'s own API.

The library reads the trie through vectorised CSR calls only; these one-node views let a test check
the structure against a naive trie without the library carrying methods nothing else uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selfretrieval_integrations.index import PassageTrie


def children(trie: PassageTrie, node: int) -> tuple[np.ndarray, np.ndarray]:
    """First tokens (ascending, int64) and node ids of ``node``'s children (none for a leaf)."""
    starts, ends = trie.child_ranges([node])
    a, b = int(starts[0]), int(ends[0])
    return trie.child_tokens(slice(a, b)), trie.child_node[a:b]


def label_of(trie: PassageTrie, node: int) -> np.ndarray:
    """The edge label of ``node`` (int64): the tokens from its parent to it; empty for the root."""
    node = trie._check_node(node)
    if node < trie.n_internal:
        codes = trie.label_code[trie.label_start[node] : trie.label_start[node + 1]]
        return np.subtract(codes, 1, dtype=np.int64)
    return trie.child_tokens(_descend(trie, node)[-1:])  # a leaf's one token is on its parent


def depth_of(trie: PassageTrie, node: int) -> int:
    """Tokens from the root to the end of ``node``'s label (a leaf's: its unique depth)."""
    node = trie._check_node(node)
    if node < trie.n_internal:
        return int(trie.internal_depth[node])
    position = _descend(trie, node)[-1]
    parent = int(np.searchsorted(trie.child_start, position, side="right")) - 1
    return int(trie.internal_depth[parent]) + 1


def title_end_nodes(trie: PassageTrie) -> np.ndarray:
    """Every title-end node id, ascending (int64)."""
    leaves = trie.title_end_leaf.astype(np.int64) + trie.n_internal
    return np.concatenate([np.flatnonzero(trie.is_title_end), leaves])


def lookup(trie: PassageTrie, prefix: Sequence[int]) -> tuple[int, int]:
    """``(node, offset)``: the node whose label holds the end of ``prefix`` and how many tokens of
    that label it consumes; ``KeyError`` if no key starts with ``prefix`` or it runs past a leaf."""
    found = trie._find(prefix)
    if found is None or found.consumed != len(prefix):
        raise KeyError(f"token prefix not in the trie: {list(prefix)[:20]!r}")
    return found.node, found.offset


def leaf_node(trie: PassageTrie, rank: int) -> int:
    """The node id of the leaf of rank ``rank``."""
    if not 0 <= int(rank) < trie.n_leaves:
        raise ValueError(f"leaf rank {rank} is outside [0, {trie.n_leaves})")
    return trie.n_internal + int(rank)


def _descend(trie: PassageTrie, node: int) -> list[int]:
    """CSR positions of the edges from the root to ``node``: O(depth in nodes) searches."""
    node = trie._check_node(node)
    target = trie._bounds(node)[0]
    positions: list[int] = []
    current = trie.root
    while current != node:
        if current >= trie.n_internal:
            raise ValueError(f"node {node} is not in this trie")
        a, b = int(trie.child_start[current]), int(trie.child_start[current + 1])
        _, hi = trie.leaf_bounds(trie.child_node[a:b])
        i = int(np.searchsorted(hi, target, side="right"))
        positions.append(a + i)
        current = int(trie.child_node[a + i])
    return positions


def path(trie: PassageTrie, node: int) -> np.ndarray:
    """The token path (int64) from the root to the end of ``node`` (a leaf's: its cut key)."""
    tokens: list[int] = []
    for p in _descend(trie, node):
        tokens += trie.edge(int(trie.child_node[p]), int(trie.child_tokens(p)))
    return np.asarray(tokens, dtype=np.int64)
