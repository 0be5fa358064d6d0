"""The trie constraint: which tokens each beam may take next, as one vectorised mask.

One (rows x vocab) mask per decoding step, built from the trie's CSR child tables with numpy:
no Python callback per beam, no state between calls. A filter arrives as prefix sums of allowed
passages over the trie's leaves, so a subset of passages is enforced without rebuilding anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from selfretrieval_integrations.index import concat_ranges

if TYPE_CHECKING:
    from selfretrieval_integrations.index import PassageTrie


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
        starts, ends = trie.child_ranges(nodes)
        idx = concat_ranges(starts, ends - starts)
        rows = np.repeat(np.arange(len(nodes), dtype=np.int64), ends - starts)  # idx's row
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
