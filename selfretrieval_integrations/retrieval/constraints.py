"""The trie constraint: which tokens each beam may take next, as one vectorised mask.

One (rows x vocab) mask per decoding step, built from the trie's CSR child tables with numpy:
no Python callback per beam, no state between calls. A filter arrives as prefix sums of allowed
passages over the trie's leaves, so a subset of passages is enforced without rebuilding anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from selfretrieval_integrations.index import PassageTrie


def _concat_ranges(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``[starts[i], ends[i])`` for all i, and the i each index came from."""
    lengths = (ends - starts).astype(np.int64)
    total = int(lengths.sum())
    owner = np.repeat(np.arange(len(starts), dtype=np.int64), lengths)
    if total == 0:
        return np.zeros(0, dtype=np.int64), owner
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts.astype(np.int64), lengths) + offsets, owner


class TrieConstraint:
    """The tokens the trie allows below given nodes (the end marker as EOS), and their mask."""

    def __init__(self, trie: PassageTrie, eos_token_id: int) -> None:
        self.trie = trie
        self.eos_token_id = int(eos_token_id)

    def allowed_children(
        self, nodes: np.ndarray, leaf_counts: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(row, token, child_node)`` for every allowed child of every row's node.

        ``leaf_counts`` (``PassageTrie.allowed_leaf_counts`` of a filter, or None for all
        passages) drops the children with no allowed passage below them. Cost is O(children of
        the rows' nodes).
        """
        trie = self.trie
        nodes = np.asarray(nodes, dtype=np.int64)
        idx, rows = _concat_ranges(*trie.child_ranges(nodes))
        tokens = trie.child_tokens(idx)
        children = np.asarray(trie.child_node[idx], dtype=np.int64)
        if leaf_counts is not None:
            lo, hi = trie.leaf_bounds(children)
            keep = leaf_counts[hi] - leaf_counts[lo] > 0
            rows, tokens, children = rows[keep], tokens[keep], children[keep]
        tokens = np.where(tokens == trie.end_token, self.eos_token_id, tokens)
        return rows, tokens, children

    def mask(
        self, shape: tuple[int, int], device: torch.device, rows: np.ndarray, tokens: np.ndarray
    ) -> torch.Tensor:
        """0 at ``(rows[i], tokens[i])``, -inf everywhere else: added to the logits."""
        mask = torch.full(shape, float("-inf"), device=device)
        mask[torch.as_tensor(rows, device=device), torch.as_tensor(tokens, device=device)] = 0.0
        return mask
