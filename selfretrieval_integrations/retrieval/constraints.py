"""Trie constraint as a vectorised transformers ``LogitsProcessor``.

One (rows x vocab) mask per decoding step, built from the trie's CSR child tables with numpy:
no Python callback per beam, no global state. The decoder tells the processor which trie node each
row stands on (``set_nodes``); filters arrive as per-row prefix sums over the trie's leaves so a
subset of passages is enforced without rebuilding anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers import LogitsProcessor

if TYPE_CHECKING:
    from selfretrieval_integrations.index import PassageTrie


def concat_ranges(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``[starts[i], ends[i])`` for all i, and the i each index came from."""
    lengths = (ends - starts).astype(np.int64)
    total = int(lengths.sum())
    owner = np.repeat(np.arange(len(starts), dtype=np.int64), lengths)
    if total == 0:
        return np.zeros(0, dtype=np.int64), owner
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts.astype(np.int64), lengths) + offsets, owner


class TrieLogitsProcessor(LogitsProcessor):
    """Sets the score of every token outside the trie (or outside the allowed subset) to -inf."""

    def __init__(self, trie: PassageTrie, eos_token_id: int) -> None:
        self.trie = trie
        self.eos_token_id = int(eos_token_id)
        self._nodes = np.zeros(1, dtype=np.int64)
        self._counts: list[np.ndarray | None] = [None]

    def set_nodes(
        self, nodes: np.ndarray, leaf_counts: list[np.ndarray | None] | None = None
    ) -> None:
        """Rows of the next ``__call__``: their trie nodes and, per row, allowed-leaf counts."""
        self._nodes = np.asarray(nodes, dtype=np.int64)
        self._counts = leaf_counts if leaf_counts is not None else [None] * len(self._nodes)

    def allowed_children(
        self, nodes: np.ndarray, leaf_counts: list[np.ndarray | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(row, token, child_node)`` for every allowed child of every row's node.

        Cost is O(children of the rows' nodes); the end marker of the trie maps to EOS.
        """
        trie = self.trie
        nodes = np.asarray(nodes, dtype=np.int64)
        idx, rows = concat_ranges(*trie.child_ranges(nodes))
        tokens = trie.child_tokens(idx)
        children = np.asarray(trie.child_node[idx], dtype=np.int64)
        if leaf_counts is not None and any(c is not None for c in leaf_counts):
            lo, hi = trie.leaf_bounds(children)
            shared = leaf_counts[0]
            if all(c is shared for c in leaf_counts):  # one filter for all rows: one gather
                keep = shared[hi] - shared[lo] > 0
            else:
                keep = np.ones(len(idx), dtype=bool)
                for row, counts in enumerate(leaf_counts):
                    if counts is not None:
                        sel = rows == row
                        keep[sel] = counts[hi[sel]] - counts[lo[sel]] > 0
            rows, tokens, children = rows[keep], tokens[keep], children[keep]
        tokens = np.where(tokens == trie.end_token, self.eos_token_id, tokens)
        return rows, tokens, children

    def mask(
        self, shape: tuple[int, int], device: torch.device, rows: np.ndarray, tokens: np.ndarray
    ) -> torch.Tensor:
        mask = torch.full(shape, float("-inf"), device=device)
        mask[torch.as_tensor(rows, device=device), torch.as_tensor(tokens, device=device)] = 0.0
        return mask

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows, tokens, _ = self.allowed_children(self._nodes, self._counts)
        return scores + self.mask(tuple(scores.shape), scores.device, rows, tokens).to(scores.dtype)
