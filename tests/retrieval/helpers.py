"""What the retrieval tests need beyond the library: the trie mask on given rows, and a way to
run calls on one model in several threads that are provably inside the model at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from selfretrieval_integrations.retrieval import TrieConstraint


def masked_scores(
    constraint: TrieConstraint,
    nodes: Sequence[int],
    scores: torch.Tensor,
    leaf_counts: np.ndarray | None = None,
) -> torch.Tensor:
    """``scores`` (one row per node) with every token the trie forbids below the node at -inf:
    what the decoder adds to the logits of beams standing on ``nodes``."""
    rows, tokens, _ = constraint.allowed_children(np.asarray(nodes, dtype=np.int64), leaf_counts)
    return scores + constraint.mask(tuple(scores.shape), scores.device, rows, tokens)


def run_together(lm: torch.nn.Module, calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run each call on its own thread; each thread's first forward pass through ``lm`` waits
    until every thread has reached its own, so all calls are in flight together (a call that is
    serialised elsewhere would never let the others arrive: the barrier times out)."""
    barrier = threading.Barrier(len(calls), timeout=30)
    arrived = threading.local()

    def wait_for_the_others(module: torch.nn.Module, args: Any, kwargs: Any) -> None:
        if not getattr(arrived, "done", False):
            arrived.done = True
            barrier.wait()

    handle = lm.register_forward_pre_hook(wait_for_the_others, with_kwargs=True)
    try:
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = [pool.submit(call) for call in calls]
            return [future.result() for future in futures]
    finally:
        handle.remove()
