"""Trie-constrained beam search: titles, then passages, in one decoding loop.

Why a loop of our own instead of ``model.generate``: the search must feed a different number of
tokens per beam in one forward pass (jump-forward through single-child runs of the trie), park
finished titles while the other title beams go on, then continue from those titles' key/value
cache into the passages, and stop each beam as soon as its prefix identifies a passage. The mask
itself is a ``TrieLogitsProcessor`` (a standard transformers ``LogitsProcessor``).

Search semantics (the paper's two stages, made exact and order-independent):

* scores are log-probabilities *renormalised over the allowed tokens*, so a forced token costs 0
  and skipping it (jump-forward) changes no score and no decision;
* stage 1 is a beam search of width ``max(title_beams, k)`` that ends a hypothesis at the end of a
  title; stage 2 is one beam search of width ``max(passage_beams, k)`` seeded with those titles;
* since scores never increase along a path, a stage stops as soon as it holds ``width`` finished
  hypotheses that no live beam can beat;
* beams are disjoint subtrees, so at least ``min(k, allowed passages)`` passages come back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from selfretrieval_integrations.base_models import cache_kwarg

from .constraints import TrieLogitsProcessor

if TYPE_CHECKING:
    from selfretrieval_integrations.index import PassageTrie

_TITLES, _PASSAGES, _DONE = 1, 2, 3


@dataclass(frozen=True)
class DecodingConfig:
    """Beam widths and switches of the constrained search."""

    title_beams: int = 5
    """Titles kept by stage 1 (raised to k when k is larger, so k results always exist)."""
    passage_beams: int = 10
    """Width of the passage beam over all kept titles (raised to k when k is larger)."""
    jump_forward: bool = True
    """Feed whole single-child runs of the trie in one forward pass."""

    def __post_init__(self) -> None:
        for name in ("title_beams", "passage_beams"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"DecodingConfig.{name} must be a positive integer, got {value!r}")


@dataclass
class Hypothesis:
    """A finished leaf of the search: passages identified by the generated prefix."""

    node: int
    passages: np.ndarray
    title_logprob: float
    logprob: float

    @property
    def passage_logprob(self) -> float:
        return self.logprob - self.title_logprob


@dataclass
class DecodingStats:
    forward_passes: int = 0
    tokens_fed: int = 0
    queries: int = 0

    def add(self, other: DecodingStats) -> None:
        self.forward_passes += other.forward_passes
        self.tokens_fed += other.tokens_fed
        self.queries += other.queries


@dataclass
class _Query:
    """Search state of one query (rows are indices into the current batch)."""

    stage: int
    title_width: int
    passage_width: int
    counts: np.ndarray | None
    allowed: np.ndarray | None
    live_rows: list[int] = field(default_factory=list)
    live_nodes: list[int] = field(default_factory=list)
    live_scores: list[float] = field(default_factory=list)
    live_title: list[float] = field(default_factory=list)
    parked: list[tuple[float, int, int]] = field(default_factory=list)  # (score, row, node)
    finished: list[Hypothesis] = field(default_factory=list)

    def width(self) -> int:
        return self.title_width if self.stage == _TITLES else self.passage_width

    def threshold(self) -> float:
        """Score a live beam must beat to still matter in the current stage."""
        width = self.width()
        done = [h.logprob for h in self.finished]
        if self.stage == _TITLES:
            done += [s for s, _, _ in self.parked]
        if len(done) < width:
            return float("-inf")
        return sorted(done, reverse=True)[width - 1]


class ConstrainedDecoder:
    """Runs the two-stage trie-constrained beam search for a batch of prompts."""

    def __init__(
        self,
        model: Any,
        trie: PassageTrie,
        *,
        eos_token_id: int,
        pad_token_id: int,
        config: DecodingConfig | None = None,
    ) -> None:
        self.model = model
        self.trie = trie
        self.config = config or DecodingConfig()
        self.processor = TrieLogitsProcessor(trie, eos_token_id)
        self.pad_token_id = int(pad_token_id)
        self.has_titles = trie.has_title_ends
        self._cache_kwarg = cache_kwarg(model)

    # -- forward plumbing -------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _forward(self, parents: list[int], chunks: list[list[int]], stats: DecodingStats) -> None:
        """Extend rows ``parents`` by ``chunks`` (one forward pass, or one per token)."""
        device = self.device
        index = torch.as_tensor(parents, dtype=torch.long, device=device)
        self.cache.reorder_cache(index)
        self.attention = self.attention[index]
        self.lengths = self.lengths[index]
        self.last_logits = self.last_logits[index]
        width = max(1, max(len(c) for c in chunks))
        ids = torch.full((len(chunks), width), self.pad_token_id, dtype=torch.long)
        real = torch.zeros((len(chunks), width), dtype=torch.long)
        for row, chunk in enumerate(chunks):
            if chunk:
                ids[row, : len(chunk)] = torch.as_tensor(chunk, dtype=torch.long)
                real[row, : len(chunk)] = 1
        ids, real = ids.to(device), real.to(device)
        sizes = real.sum(dim=1)
        stats.tokens_fed += int(sizes.sum())
        steps = [(0, width)] if self.config.jump_forward else [(t, t + 1) for t in range(width)]
        for start, stop in steps:
            part = real[:, start:stop]
            positions = self.lengths[:, None] + torch.cumsum(part, dim=1) - 1
            self.attention = torch.cat([self.attention, part], dim=1)
            out = self.model(
                input_ids=ids[:, start:stop],
                attention_mask=self.attention,
                position_ids=positions.clamp(min=0),
                **{self._cache_kwarg: self.cache},
                use_cache=True,
            )
            stats.forward_passes += 1
            self.lengths = self.lengths + part.sum(dim=1)
            last = (sizes - 1 - start).clamp(min=0, max=stop - start - 1)
            has_last = (sizes - 1 >= start) & (sizes - 1 < stop)
            picked = out.logits[torch.arange(len(chunks), device=device), last].float()
            self.last_logits = torch.where(has_last[:, None], picked, self.last_logits)

    def _start(self, prompts: Sequence[Sequence[int]], stats: DecodingStats) -> None:
        from transformers import DynamicCache

        device = self.device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left padding: every prompt ends at `width`
            ids[row, width - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
            attention[row, width - len(prompt) :] = 1
        ids, attention = ids.to(device), attention.to(device)
        positions = (torch.cumsum(attention, dim=1) - 1).clamp(min=0)
        self.cache = DynamicCache()
        out = self.model(
            input_ids=ids,
            attention_mask=attention,
            position_ids=positions,
            **{self._cache_kwarg: self.cache},
            use_cache=True,
        )
        stats.forward_passes += 1
        stats.tokens_fed += int(attention.sum())
        self.attention = attention
        self.lengths = attention.sum(dim=1)
        self.last_logits = out.logits[:, -1].float()

    # -- search -----------------------------------------------------------------------------

    def _forced_run(
        self, node: int, counts: np.ndarray | None, stage: int
    ) -> tuple[int, list[int]]:
        """Follow single-allowed-child links below ``node``; returns the end node and tokens."""
        tokens: list[int] = []
        while not self._complete(node, stage):
            _, toks, children = self.processor.allowed_children(np.array([node]), [counts])
            if len(children) != 1:
                break
            node = int(children[0])
            tokens.extend(self._label(node, int(toks[0])))
        return node, tokens

    def _label(self, node: int, first_token: int) -> list[int]:
        """Tokens of the edge into ``node`` (its first token as the mask allowed it: the trie's
        end marker is fed as EOS)."""
        return self.trie.edge(node, first_token)

    def _is_leaf(self, node: int) -> bool:
        return self.trie.is_leaf(node)

    def _complete(self, node: int, stage: int) -> bool:
        return self._is_leaf(node) or (stage == _TITLES and self.trie.is_title_end_node(node))

    def decode(
        self,
        prompts: Sequence[Sequence[int]],
        k: int,
        passage_masks: Sequence[np.ndarray | None] | None = None,
    ) -> tuple[list[list[Hypothesis]], DecodingStats]:
        """Best hypotheses per prompt (at least ``min(k, allowed)`` passages among them).

        ``passage_masks[i]`` (boolean over passage indices, or None for all) restricts what
        prompt i can generate: disallowed passages are masked out of every step.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        stats = DecodingStats(queries=len(prompts))
        masks = list(passage_masks) if passage_masks is not None else [None] * len(prompts)
        if len(masks) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts but {len(masks)} passage masks")
        queries: list[_Query] = []
        for row, mask in enumerate(masks):
            counts = None if mask is None else self.trie.allowed_leaf_counts(mask)
            query = _Query(
                stage=_TITLES if self.has_titles else _PASSAGES,
                title_width=max(self.config.title_beams, k),
                passage_width=max(self.config.passage_beams, k),
                counts=counts,
                allowed=None if mask is None else np.asarray(mask, dtype=bool),
            )
            if counts is not None and counts[-1] == 0:
                query.stage = _DONE
            else:
                query.live_rows, query.live_nodes = [row], [int(self.trie.root)]
                query.live_scores, query.live_title = [0.0], [0.0]
            queries.append(query)
        try:
            with torch.inference_mode():
                self._start(prompts, stats)
                while True:
                    parents: list[int] = []
                    chunks: list[list[int]] = []
                    for query in queries:
                        self._advance(query, parents, chunks)
                    if not parents:
                        break
                    self._forward(parents, chunks, stats)
        finally:
            self.cache = None
            self.attention = self.lengths = self.last_logits = None
        results = []
        for query in queries:
            hyps = sorted(query.finished, key=lambda h: h.logprob, reverse=True)
            results.append(hyps[: query.passage_width])
        return results, stats

    def _advance(self, query: _Query, parents: list[int], chunks: list[list[int]]) -> None:
        """One step of one query; appends the rows it keeps to ``parents``/``chunks``."""
        if query.stage == _TITLES and self._stage_over(query):
            self._start_passages(query)
        if query.stage == _PASSAGES and self._stage_over(query):
            query.stage = _DONE
        if query.stage == _DONE:
            return
        stage, width = query.stage, query.width()
        nodes = np.asarray(query.live_nodes, dtype=np.int64)
        rows, tokens, children = self.processor.allowed_children(nodes, [query.counts] * len(nodes))
        logits = self.last_logits[torch.as_tensor(query.live_rows, device=self.last_logits.device)]
        mask = self.processor.mask(tuple(logits.shape), logits.device, rows, tokens)
        logp = torch.log_softmax(logits + mask, dim=-1)
        picked = (
            logp[
                torch.as_tensor(rows, device=logp.device),
                torch.as_tensor(tokens, device=logp.device),
            ]
            .cpu()
            .numpy()
        )
        scores = np.asarray(query.live_scores, dtype=np.float64)[rows] + picked
        order = np.argsort(-scores, kind="stable")[:width]
        # The best `width` candidates; each may end its stage (possibly after a forced run).
        new_parked: list[tuple[float, int, int, list[int]]] = []
        new_live: list[tuple[float, int, int, list[int], float]] = []
        threshold = query.threshold()
        for i in order:
            score = float(scores[i])
            parent = query.live_rows[int(rows[i])]
            title = query.live_title[int(rows[i])]
            node = int(children[i])
            run = self._label(node, int(tokens[i]))
            end, forced = self._forced_run(node, query.counts, stage)
            if not self._complete(end, stage):
                new_live.append((score, parent, end, run + forced, title))
            elif score <= threshold:
                continue  # cannot enter the top `width` any more
            elif self._is_leaf(end):
                passages = np.asarray(self.trie.passages_at(end))
                if query.allowed is not None:
                    passages = passages[query.allowed[passages]]
                title_score = score if stage == _TITLES else title
                query.finished.append(Hypothesis(end, passages, title_score, score))
            else:
                new_parked.append((score, parent, end, run + forced))
        # Keep the best titles found so far (old parked rows carry no new tokens).
        parked = [(s, row, n, []) for s, row, n in query.parked] + new_parked
        parked.sort(key=lambda item: item[0], reverse=True)
        query.parked = []
        for score, parent, node, chunk in parked[: query.title_width]:
            parents.append(parent)
            chunks.append(chunk)
            query.parked.append((score, len(parents) - 1, node))
        query.live_rows, query.live_nodes, query.live_scores, query.live_title = [], [], [], []
        for score, parent, node, chunk, title in new_live:
            parents.append(parent)
            chunks.append(chunk)
            query.live_rows.append(len(parents) - 1)
            query.live_nodes.append(node)
            query.live_scores.append(score)
            query.live_title.append(title)

    def _stage_over(self, query: _Query) -> bool:
        if not query.live_scores:
            return True
        return max(query.live_scores) <= query.threshold()

    def _start_passages(self, query: _Query) -> None:
        """Turn the parked titles into the live beams of stage 2 (their cache rows stay)."""
        query.stage = _PASSAGES
        query.live_rows = [row for _, row, _ in query.parked]
        query.live_nodes = [node for _, _, node in query.parked]
        query.live_scores = [score for score, _, _ in query.parked]
        query.live_title = list(query.live_scores)
        query.parked = []
