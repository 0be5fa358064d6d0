"""Teacher-forced log-probabilities of continuations after a shared prefix, in batches.

Self-assessment (the refusal after a passage), the generation score of a passage that the beams
did not reach (its trie key after the query) and query likelihood all ask the same question:
how likely are these target tokens after this prefix and this context? The prefix (the query's
prompt) is encoded once and its key/value cache shared by every row of a batch; rows are padded on
the left so every target ends its row, and only the target positions get logits.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from selfretrieval_integrations.base_models import cache_kwarg, logits_to_keep_kwarg


@dataclass(frozen=True)
class EncodedPrefix:
    """A prefix's key/value cache (never mutated: each batch works on a copy)."""

    cache: Any
    length: int
    """Prefix tokens in the cache."""
    carried: list[int]
    """The prefix's last token when it was kept out of the cache (fed again with each row)."""


class ContinuationScorer:
    """Log-probability of each target token of ``(context, target)`` rows after one prefix."""

    def __init__(self, model: Any, pad_token_id: int, batch_size: int = 16) -> None:
        self.model = model
        self.pad_token_id = int(pad_token_id)
        self.batch_size = batch_size
        self._cache_kwarg = cache_kwarg(model)
        self._logits_kwarg = logits_to_keep_kwarg(model)
        self.forward_passes = 0
        """Forward passes run so far (the prefix's and each batch's), for benchmarks."""
        self.tokens_fed = 0
        """Token positions fed to the model so far, padding included."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _keep(self, n: int) -> dict[str, int]:
        return {self._logits_kwarg: n} if self._logits_kwarg else {}

    def token_logprobs(
        self, prefix: Sequence[int], rows: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[np.ndarray]:
        """``log P(target_t | prefix, context, target_<t)`` for every row's target tokens."""
        if not rows:
            return []
        carry_last = not all(context for context, _ in rows)
        return self.continue_rows(self.start(prefix, carry_last=carry_last), rows)

    def start(self, prefix: Sequence[int], *, carry_last: bool = False) -> EncodedPrefix:
        """The prefix encoded once, for ``continue_rows`` calls that follow (a query whose
        candidates are scored a few at a time pays for its prompt only once).

        ``carry_last``: keep the prefix's last token out of the cache, so that rows without
        context can predict their first target token from it.
        """
        if not prefix:
            raise ValueError("the prefix must hold at least one token")
        from transformers import DynamicCache

        prefix = list(prefix)
        carried = prefix[-1:] if carry_last else []
        cached = prefix[: len(prefix) - len(carried)]
        if not cached:
            raise ValueError("the prefix must hold at least two tokens for rows without context")
        cache = DynamicCache()
        with torch.inference_mode():
            self.model(
                input_ids=torch.as_tensor([cached], dtype=torch.long, device=self.device),
                **{self._cache_kwarg: cache},
                use_cache=True,
                **self._keep(1),
            )
        self.forward_passes += 1
        self.tokens_fed += len(cached)
        return EncodedPrefix(cache, len(cached), carried)

    def continue_rows(
        self, prefix: EncodedPrefix, rows: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[np.ndarray]:
        """``token_logprobs`` of ``rows`` after a prefix ``start`` encoded."""
        if any(not target for _, target in rows):
            raise ValueError("every row needs at least one target token")
        if not prefix.carried and any(not context for context, _ in rows):
            raise ValueError("rows without context need a prefix started with carry_last=True")
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start : start + self.batch_size]
                out.extend(self._batch(prefix.cache, prefix.length, prefix.carried, batch))
        return out

    def _batch(
        self,
        prefix_cache: Any,
        cached: int,
        carried: list[int],
        batch: Sequence[tuple[Sequence[int], Sequence[int]]],
    ) -> list[np.ndarray]:
        device = self.device
        chunks = [[*carried, *context, *target[:-1]] for context, target in batch]
        keep = max(len(target) for _, target in batch)
        width = max(len(c) for c in chunks)
        n = len(batch)
        ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        real = torch.zeros((n, width), dtype=torch.long)
        positions = torch.full((n, width), cached, dtype=torch.long)
        targets = torch.full((n, keep), self.pad_token_id, dtype=torch.long)
        for row, (chunk, (_, target)) in enumerate(zip(chunks, batch, strict=True)):
            pad = width - len(chunk)
            ids[row, pad:] = torch.as_tensor(chunk)
            real[row, pad:] = 1
            positions[row, pad:] = cached + torch.arange(len(chunk))
            targets[row, keep - len(target) :] = torch.as_tensor(list(target))
        ids, real, positions = ids.to(device), real.to(device), positions.to(device)
        self.forward_passes += 1
        self.tokens_fed += n * width
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(n)
        attention = torch.cat(
            [torch.ones((n, cached), dtype=torch.long, device=device), real], dim=1
        )
        logits = self.model(
            input_ids=ids,
            attention_mask=attention,
            position_ids=positions,
            **{self._cache_kwarg: cache},
            use_cache=True,
            **self._keep(keep),
        ).logits[:, -keep:]
        logp = torch.log_softmax(logits.float(), dim=-1)
        picked = logp.gather(-1, targets.to(device)[..., None])[..., 0].double().cpu().numpy()
        return [picked[row, keep - len(target) :] for row, (_, target) in enumerate(batch)]
