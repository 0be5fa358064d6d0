"""Trie-constrained beam search: titles, then passages, in one decoding loop.

Why a loop of our own instead of ``model.generate``: the search must feed a different number of
tokens per beam in one forward pass (jump-forward through single-child runs of the trie), park
finished titles while the other title beams go on, then continue from those titles' key/value
cache into the passages, and stop each beam as soon as its prefix identifies a passage. The mask
itself comes from a ``TrieConstraint``.

Search semantics (the paper's two stages, made exact and order-independent):

* scores are log-probabilities *renormalised over the allowed tokens*, so a forced token costs 0
  and skipping it (jump-forward) changes no score and no decision;
* stage 1 is a beam search of width ``max(title_beams, k)`` that ends a hypothesis at the end of a
  title; stage 2 is one beam search of width ``max(passage_beams, k)`` seeded with those titles;
* since scores never increase along a path, a stage stops as soon as it holds ``width`` finished
  hypotheses that no live beam can beat;
* beams are disjoint subtrees, so at least ``min(k, allowed passages)`` passages come back.

A ``ConstrainedDecoder`` holds only what is fixed (model, trie, token ids, config); everything a
call changes lives in objects that call creates (``_BeamRows``, ``_QueryBeams``), so one decoder
can serve several threads at once.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from selfretrieval_integrations.base_models import cache_kwarg
from selfretrieval_integrations.validation import checked_int

from .constraints import TrieConstraint

if TYPE_CHECKING:
    from selfretrieval_integrations.index import PassageTrie


class _Stage(enum.Enum):
    """Where the search of one query stands."""

    TITLES = enum.auto()
    """Stage 1: beams run until they reach the end of a title (only for tries with titles)."""
    PASSAGES = enum.auto()
    """Stage 2: beams run from the kept titles (or the root) until they identify passages."""
    DONE = enum.auto()


@dataclass(frozen=True)
class DecodingConfig:
    """Beam widths and switches of the constrained search."""

    title_beams: int = 5
    """Titles kept by stage 1 (raised to k when k is larger, so k results always exist)."""
    passage_beams: int = 10
    """Width of the passage beam over all kept titles (raised to k when k is larger)."""
    jump_forward: bool = True
    """Feed whole single-child runs of the trie in one forward pass."""
    candidates: int = 10
    """Passages decoded per query (at least ``k``) before self-assessment ranks them and the
    best ``k`` are kept: the right passage must be among them to be found."""

    def __post_init__(self) -> None:
        checked_int(self.candidates, "DecodingConfig.candidates")
        checked_int(self.title_beams, "DecodingConfig.title_beams")
        checked_int(self.passage_beams, "DecodingConfig.passage_beams")


@dataclass
class Hypothesis:
    """A finished leaf of the search: passages identified by the generated prefix."""

    node: int
    passages: np.ndarray
    title_logprob: float
    logprob: float


@dataclass
class DecodingStats:
    """What decoding cost: forward passes, tokens fed to the model, queries decoded."""

    forward_passes: int = 0
    tokens_fed: int = 0
    queries: int = 0

    def add(self, other: DecodingStats) -> None:
        self.forward_passes += other.forward_passes
        self.tokens_fed += other.tokens_fed
        self.queries += other.queries


@dataclass
class _BeamRows:
    """The model side of one ``decode`` call: one row per beam of every query in the batch.

    ``cache`` is the key/value cache, ``attention`` its mask, ``lengths`` the real tokens per row
    and ``last_logits`` the logits after each row's last real token.
    """

    cache: Any
    attention: torch.Tensor
    lengths: torch.Tensor
    last_logits: torch.Tensor


@dataclass
class _QueryBeams:
    """Search state of one query in one ``decode`` call (rows index the batch's ``_BeamRows``)."""

    stage: _Stage
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
        return self.title_width if self.stage is _Stage.TITLES else self.passage_width

    def threshold(self) -> float:
        """Score a live beam must beat to still matter in the current stage."""
        width = self.width()
        done = [h.logprob for h in self.finished]
        if self.stage is _Stage.TITLES:
            done += [s for s, _, _ in self.parked]
        if len(done) < width:
            return float("-inf")
        return sorted(done, reverse=True)[width - 1]

    def stage_over(self) -> bool:
        if not self.live_scores:
            return True
        return max(self.live_scores) <= self.threshold()

    def start_passages(self) -> None:
        """Turn the parked titles into the live beams of stage 2 (their cache rows stay)."""
        self.stage = _Stage.PASSAGES
        self.live_rows = [row for _, row, _ in self.parked]
        self.live_nodes = [node for _, _, node in self.parked]
        self.live_scores = [score for score, _, _ in self.parked]
        self.live_title = list(self.live_scores)
        self.parked = []


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
        self.constraint = TrieConstraint(trie, eos_token_id)
        self.pad_token_id = int(pad_token_id)
        self.has_titles = trie.has_title_ends
        self._cache_kwarg = cache_kwarg(model)

    # -- forward plumbing -------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _prefill(self, prompts: Sequence[Sequence[int]], stats: DecodingStats) -> _BeamRows:
        """One row per prompt, after one forward pass over the left-padded prompts."""
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
        cache = DynamicCache()
        out = self.model(
            input_ids=ids,
            attention_mask=attention,
            position_ids=positions,
            **{self._cache_kwarg: cache},
            use_cache=True,
        )
        stats.forward_passes += 1
        stats.tokens_fed += int(attention.sum())
        return _BeamRows(cache, attention, attention.sum(dim=1), out.logits[:, -1].float())

    def _extend(
        self,
        beams: _BeamRows,
        parents: list[int],
        chunks: list[list[int]],
        stats: DecodingStats,
    ) -> None:
        """Make row i a copy of row ``parents[i]`` extended by ``chunks[i]`` (one forward pass,
        or one per token without jump-forward)."""
        device = self.device
        index = torch.as_tensor(parents, dtype=torch.long, device=device)
        beams.cache.reorder_cache(index)
        beams.attention = beams.attention[index]
        beams.lengths = beams.lengths[index]
        beams.last_logits = beams.last_logits[index]
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
            positions = beams.lengths[:, None] + torch.cumsum(part, dim=1) - 1
            beams.attention = torch.cat([beams.attention, part], dim=1)
            out = self.model(
                input_ids=ids[:, start:stop],
                attention_mask=beams.attention,
                position_ids=positions.clamp(min=0),
                **{self._cache_kwarg: beams.cache},
                use_cache=True,
            )
            stats.forward_passes += 1
            beams.lengths = beams.lengths + part.sum(dim=1)
            last = (sizes - 1 - start).clamp(min=0, max=stop - start - 1)
            has_last = (sizes - 1 >= start) & (sizes - 1 < stop)
            picked = out.logits[torch.arange(len(chunks), device=device), last].float()
            beams.last_logits = torch.where(has_last[:, None], picked, beams.last_logits)

    # -- search -----------------------------------------------------------------------------

    def _forced_run(
        self, node: int, counts: np.ndarray | None, stage: _Stage
    ) -> tuple[int, list[int]]:
        """Follow single-allowed-child links below ``node``; returns the end node and tokens."""
        tokens: list[int] = []
        while not self._complete(node, stage):
            _, toks, children = self.constraint.allowed_children(np.array([node]), counts)
            if len(children) != 1:
                break
            node = int(children[0])
            tokens.extend(self._label(node, int(toks[0])))
        return node, tokens

    def _label(self, node: int, first_token: int) -> list[int]:
        """Tokens of the edge into ``node`` (its first token as the mask allowed it: the trie's
        end marker is fed as EOS)."""
        return self.trie.edge(node, first_token)

    def _complete(self, node: int, stage: _Stage) -> bool:
        return self.trie.is_leaf(node) or (
            stage is _Stage.TITLES and self.trie.is_title_end_node(node)
        )

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
        k = checked_int(k, "k")
        stats = DecodingStats(queries=len(prompts))
        masks = list(passage_masks) if passage_masks is not None else [None] * len(prompts)
        if len(masks) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts but {len(masks)} passage masks")
        queries: list[_QueryBeams] = []
        for row, mask in enumerate(masks):
            counts = None if mask is None else self.trie.allowed_leaf_counts(mask)
            query = _QueryBeams(
                stage=_Stage.TITLES if self.has_titles else _Stage.PASSAGES,
                title_width=max(self.config.title_beams, k),
                passage_width=max(self.config.passage_beams, k),
                counts=counts,
                allowed=None if mask is None else np.asarray(mask, dtype=bool),
            )
            if counts is not None and counts[-1] == 0:
                query.stage = _Stage.DONE
            else:
                query.live_rows, query.live_nodes = [row], [int(self.trie.root)]
                query.live_scores, query.live_title = [0.0], [0.0]
            queries.append(query)
        with torch.inference_mode():
            beams = self._prefill(prompts, stats)
            while True:
                parents: list[int] = []
                chunks: list[list[int]] = []
                for query in queries:
                    self._advance(query, beams.last_logits, parents, chunks)
                if not parents:
                    break
                self._extend(beams, parents, chunks, stats)
        results = []
        for query in queries:
            hyps = sorted(query.finished, key=lambda h: h.logprob, reverse=True)
            results.append(hyps[: query.passage_width])
        return results, stats

    def _advance(
        self,
        query: _QueryBeams,
        last_logits: torch.Tensor,
        parents: list[int],
        chunks: list[list[int]],
    ) -> None:
        """One step of one query; appends the rows it keeps to ``parents``/``chunks``."""
        if query.stage is _Stage.TITLES and query.stage_over():
            query.start_passages()
        if query.stage is _Stage.PASSAGES and query.stage_over():
            query.stage = _Stage.DONE
        if query.stage is _Stage.DONE:
            return
        stage, width = query.stage, query.width()
        nodes = np.asarray(query.live_nodes, dtype=np.int64)
        rows, tokens, children = self.constraint.allowed_children(nodes, query.counts)
        logits = last_logits[torch.as_tensor(query.live_rows, device=last_logits.device)]
        mask = self.constraint.mask(tuple(logits.shape), logits.device, rows, tokens)
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
            elif self.trie.is_leaf(end):
                passages = np.asarray(self.trie.passages_at(end))
                if query.allowed is not None:
                    passages = passages[query.allowed[passages]]
                title_score = score if stage is _Stage.TITLES else title
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
