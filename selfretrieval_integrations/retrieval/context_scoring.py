"""Teacher-forced log-probabilities of targets after contexts whose key/value caches are kept.

Query likelihood reads a passage first and the query after it, so a passage's key/value cache
does not depend on the query: it is computed once, kept in a bounded least-recently-used cache,
and every later query that meets the passage pays only for its own few tokens. On the SQuAD
small slice a passage is about 200 tokens and a question about 15, so a candidate that is
already cached costs about a tenth of reading it again (``benchmarks/latency.py`` measures it).
The scores are the ones a plain forward pass over context and target gives (tested).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from selfretrieval_integrations.base_models import cache_kwarg, logits_to_keep_kwarg

Layers = list[tuple[torch.Tensor, torch.Tensor]]
"""One context's keys and values, per layer, each ``(1, heads, length, head_dim)``."""


def cache_layers(cache: Any) -> Layers:
    """Keys and values of every layer of a transformers cache (5.x layers, or 4.x lists)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))


def cache_from_layers(layers: Layers) -> Any:
    """A ``DynamicCache`` that holds ``layers``."""
    from transformers import DynamicCache

    try:
        return DynamicCache(layers)
    except TypeError:  # transformers 4.x
        return DynamicCache.from_legacy_cache(tuple(layers))


class ContextCache:
    """Least-recently-used key/value caches of contexts, at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[int, ...], tuple[Layers, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: tuple[int, ...]) -> Layers | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: tuple[int, ...], layers: Layers) -> None:
        size = sum(k.nbytes + v.nbytes for k, v in layers)
        if size > self.max_bytes or key in self._entries:
            return
        self._entries[key] = (layers, size)
        self.bytes += size
        self.resize(self.max_bytes)

    def resize(self, max_bytes: int) -> None:
        """A new budget; the least recently used caches go until the rest fit."""
        self.max_bytes = max_bytes
        while self._entries and self.bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0


class CachedContextScorer:
    """Log-probability of each target token of ``(context, target)`` rows; contexts' caches are
    kept in a ``ContextCache`` between calls."""

    def __init__(
        self, model: Any, pad_token_id: int, batch_size: int = 16, cache_bytes: int = 0
    ) -> None:
        self.model = model
        self.pad_token_id = int(pad_token_id)
        self.batch_size = batch_size
        self.cache = ContextCache(cache_bytes)
        self._cache_kwarg = cache_kwarg(model)
        self._logits_kwarg = logits_to_keep_kwarg(model)
        self.forward_passes = 0
        """Forward passes run so far, for benchmarks."""
        self.tokens_fed = 0
        """Token positions fed to the model so far, padding included."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def token_logprobs(
        self, rows: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[np.ndarray]:
        """``log P(target_t | context, target_<t)`` for every row's target tokens.

        Each context needs at least two tokens: all but its last are cached, the last is fed
        with the target so that it predicts the target's first token.
        """
        if any(len(context) < 2 for context, _ in rows):
            raise ValueError("every context needs at least two tokens")
        if any(not target for _, target in rows):
            raise ValueError("every row needs at least one target token")
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start : start + self.batch_size]
                keys = [tuple(int(t) for t in context[:-1]) for context, _ in batch]
                layers = self._contexts(keys)
                out.extend(self._score(keys, layers, batch))
        return out

    def read(self, contexts: Sequence[Sequence[int]]) -> int:
        """Compute and keep the caches of ``contexts`` ahead of the queries that will meet them
        (as many as the budget holds); returns how many were computed."""
        keys = [tuple(int(t) for t in context[:-1]) for context in contexts]
        missing = [key for key in dict.fromkeys(keys) if key not in self.cache]
        with torch.inference_mode():
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start : start + self.batch_size]
                for key, layers in zip(chunk, self._encode(chunk), strict=True):
                    self.cache.put(key, layers)
        return len(missing)

    def _contexts(self, keys: Sequence[tuple[int, ...]]) -> list[Layers]:
        """The cache of each context: kept ones from ``cache``, the others computed together."""
        found: dict[tuple[int, ...], Layers] = {}
        missing: list[tuple[int, ...]] = []
        for key in dict.fromkeys(keys):
            layers = self.cache.get(key)
            if layers is None:
                missing.append(key)
            else:
                found[key] = layers
        if missing:
            for key, layers in zip(missing, self._encode(missing), strict=True):
                found[key] = layers
                self.cache.put(key, layers)
        return [found[key] for key in keys]

    def _encode(self, contexts: Sequence[tuple[int, ...]]) -> list[Layers]:
        """Key/value caches of ``contexts`` from one forward pass, padded on the right (causal
        attention never sees the padding, so every context's own positions are exact)."""
        device = self.device
        width = max(len(c) for c in contexts)
        n = len(contexts)
        ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for row, context in enumerate(contexts):
            ids[row, : len(context)] = torch.as_tensor(context)
            mask[row, : len(context)] = 1
        from transformers import DynamicCache

        cache = DynamicCache()
        self.model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            **{self._cache_kwarg: cache},
            use_cache=True,
            **({self._logits_kwarg: 1} if self._logits_kwarg else {}),
        )
        self.forward_passes += 1
        self.tokens_fed += n * width
        layers = cache_layers(cache)
        return [
            [
                (k[row : row + 1, :, : len(c)].clone(), v[row : row + 1, :, : len(c)].clone())
                for k, v in layers
            ]
            for row, c in enumerate(contexts)
        ]

    def _score(
        self,
        keys: Sequence[tuple[int, ...]],
        contexts: Sequence[Layers],
        batch: Sequence[tuple[Sequence[int], Sequence[int]]],
    ) -> list[np.ndarray]:
        """One forward pass over the rows' targets, after their contexts' caches padded on the
        left to one length (masked out)."""
        device = self.device
        n = len(batch)
        lengths = [len(key) for key in keys]
        cached = max(lengths)
        layers = []
        for layer in range(len(contexts[0])):
            k0, v0 = contexts[0][layer]
            keys = k0.new_zeros((n, k0.shape[1], cached, k0.shape[3]))
            values = v0.new_zeros((n, v0.shape[1], cached, v0.shape[3]))
            for row in range(n):
                k, v = contexts[row][layer]
                keys[row, :, cached - lengths[row] :] = k[0]
                values[row, :, cached - lengths[row] :] = v[0]
            layers.append((keys, values))
        chunks = [[context[-1], *target[:-1]] for context, target in batch]
        width = max(len(c) for c in chunks)
        ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((n, cached + width), dtype=torch.long)
        positions = torch.zeros((n, width), dtype=torch.long)
        targets = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        for row, (chunk, (_, target)) in enumerate(zip(chunks, batch, strict=True)):
            length = lengths[row]
            ids[row, : len(chunk)] = torch.as_tensor(chunk)
            attention[row, cached - length : cached + len(chunk)] = 1
            positions[row] = length + torch.arange(width)
            targets[row, : len(target)] = torch.as_tensor(list(target))
        logits = self.model(
            input_ids=ids.to(device),
            attention_mask=attention.to(device),
            position_ids=positions.to(device),
            **{self._cache_kwarg: cache_from_layers(layers)},
            use_cache=True,
        ).logits
        self.forward_passes += 1
        self.tokens_fed += n * width
        logp = torch.log_softmax(logits.float(), dim=-1)
        picked = logp.gather(-1, targets.to(device)[..., None])[..., 0].double().cpu().numpy()
        return [picked[row, : len(target)] for row, (_, target) in enumerate(batch)]
