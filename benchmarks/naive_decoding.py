"""A deliberately straightforward trie-constrained retriever: the baseline of ``decoding_bench``.

It implements the *same search* as :class:`selfretrieval_integrations.decoding.ConstrainedDecoder`
(see that module's docstring), so it returns the same passages with the same scores up to float
noise, but the way a first implementation would:

* the trie is a nested Python dict over token ids, built from the same keys
  (``Renderer.encode_target(...).ids``) and cut where a prefix identifies one distinct key;
* the constraint is a per-step Python callback with the transformers signature
  ``prefix_allowed_tokens_fn(batch_id, input_ids) -> list[int]`` that walks the dict trie from the
  root over the generated suffix of ``input_ids`` at every call, and the mask is filled by a
  Python loop over the beams;
* one token per forward pass: the forced tokens of a single-child run are fed one by one, each in
  its own forward pass (no jump-forward); a run that ends a title or a passage is fed up to its
  last token, as a token-by-token ``generate`` loop would before it sees the end;
* stage 1 (titles) and stage 2 (passages) are separate calls: stage 2 re-encodes prompt + title
  from scratch (no key/value reuse across the stages); within a stage a KV cache is used, as
  ``generate`` does;
* one query at a time (a batch of one prompt).

Beam logic (identical to ``decoding.py``): scores are log-probabilities renormalised over the
allowed tokens; stage 1 has width ``max(title_beams, k)`` and ends a hypothesis at the end of a
title; stage 2 is one beam search of width ``max(passage_beams, k)`` seeded with those titles.
Each step expands every live beam, sorts the candidates best first and keeps the top ``width``;
a kept candidate first takes the forced run below its token, then finishes (a passage), parks
(a title, stage 1) or stays live. A stage stops as soon as ``width`` finished hypotheses beat
every live beam (scores never increase along a path, so this is exact).

Only for benchmarks and tests: there is no filter support and nothing is persisted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from selfretrieval_integrations.base_models import cache_kwarg

Node = dict[str, Any]
"""A dict-trie node: ``next`` (token -> node), ``passages``, ``keys``, ``title_end``, ``depth``."""

PrefixAllowedTokensFn = Callable[[int, torch.Tensor], list[int]]


def _new_node(depth: int) -> Node:
    return {"next": {}, "passages": [], "keys": 0, "title_end": False, "depth": depth}


class DictTrie:
    """Nested-dict prefix trie over full token keys, cut where a prefix is one distinct key.

    ``keys[i]`` is the token-id sequence of passage ``i`` (ending with EOS) and
    ``title_lengths[i]`` the number of its leading tokens that form the title segment. Identical
    keys share a leaf that lists all their passages. A key that is a proper prefix of another key
    is not supported (keys end with EOS, which never occurs inside a rendered passage).
    """

    def __init__(self, keys: Sequence[Sequence[int]], title_lengths: Sequence[int]) -> None:
        if len(keys) != len(title_lengths):
            raise ValueError(f"got {len(keys)} keys but {len(title_lengths)} title lengths")
        distinct: dict[tuple[int, ...], list[int]] = {}
        for i, key in enumerate(keys):
            distinct.setdefault(tuple(int(t) for t in key), []).append(i)
        self.root = _new_node(0)
        ends: list[tuple[Node, int]] = []
        for key, ids in distinct.items():
            node = self.root
            node["keys"] += 1
            node["passages"].extend(ids)
            for depth, token in enumerate(key, start=1):
                node = node["next"].setdefault(token, _new_node(depth))
                node["keys"] += 1
                node["passages"].extend(ids)
                if any(int(title_lengths[i]) == depth for i in ids):
                    node["title_end"] = True
            ends.append((node, ids[0]))
        for node, first in ends:
            if node["next"]:
                raise ValueError(f"key of passage {first} is a proper prefix of another key")
        # Cut every path at the first node below the root that holds a single distinct key.
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node["depth"] >= 1 and node["keys"] == 1:
                node["next"] = {}
                node["passages"] = sorted(node["passages"])
            else:
                stack.extend(node["next"].values())
        self.has_titles = self._any_title_end()

    def _any_title_end(self) -> bool:
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node["title_end"]:
                return True
            stack.extend(node["next"].values())
        return False

    def walk(self, tokens: Sequence[int]) -> Node:
        """The node reached from the root by ``tokens`` (KeyError if they leave the trie)."""
        node = self.root
        for token in tokens:
            node = node["next"][int(token)]
        return node

    def prefix_allowed_tokens_fn(self, prompt_length: int) -> PrefixAllowedTokensFn:
        """The transformers-style callback for sequences that start with a prompt this long."""

        def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
            return list(self.walk(input_ids[prompt_length:].tolist())["next"])

        return allowed


@dataclass
class NaiveHypothesis:
    """A finished search leaf: its passages (ascending indices) and scores."""

    passages: list[int]
    title_logprob: float
    logprob: float


@dataclass
class _Beam:
    tokens: list[int]  # generated so far (title and passage tokens, after the prompt)
    score: float
    title_score: float


@dataclass
class NaiveStats:
    forward_passes: int = 0
    tokens_fed: int = 0
    callback_calls: int = 0


@dataclass
class _Stage:
    width: int
    finished: list[NaiveHypothesis]
    parked: list[tuple[float, list[int]]] = field(default_factory=list)  # (score, tokens)

    def threshold(self, titles: bool) -> float:
        done = [h.logprob for h in self.finished]
        if titles:
            done += [score for score, _ in self.parked]
        if len(done) < self.width:
            return float("-inf")
        return sorted(done, reverse=True)[self.width - 1]


class NaiveDecoder:
    """The two-stage constrained beam search, one query at a time, the straightforward way."""

    def __init__(
        self,
        model: Any,
        keys: Sequence[Sequence[int]],
        title_lengths: Sequence[int],
        *,
        eos_token_id: int,
        pad_token_id: int,
        title_beams: int = 5,
        passage_beams: int = 10,
        feed_ending_runs: bool = True,
    ) -> None:
        """``feed_ending_runs=False`` skips feeding a forced run that ends its beam's stage
        (its logits are never used): a smarter baseline, for comparison only."""
        self.model = model
        self.trie = DictTrie(keys, title_lengths)
        self.eos_token_id = int(eos_token_id)
        self.pad_token_id = int(pad_token_id)
        self.title_beams = title_beams
        self.passage_beams = passage_beams
        self.title_width = title_beams
        self.feed_ending_runs = feed_ending_runs
        self._cache_kwarg = cache_kwarg(model)
        self.stats = NaiveStats()

    @classmethod
    def for_model(cls, model: Any, decoding: Any, **options: Any) -> NaiveDecoder:
        """A baseline over the same targets, tokens and beam widths as a ``SelfRetrievalModel``."""
        targets = [
            model.renderer.encode_target(model.store[i].title, model.store[i].text)
            for i in range(len(model.store))
        ]
        return cls(
            model.model,
            [t.ids for t in targets],
            [t.title_length for t in targets],
            eos_token_id=model.renderer.eos_id,
            pad_token_id=model.decoder.pad_token_id,
            title_beams=decoding.title_beams,
            passage_beams=decoding.passage_beams,
            **options,
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- model calls -----------------------------------------------------------------------------

    def _call(self, ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor) -> Any:
        self.stats.forward_passes += 1
        return self.model(
            input_ids=ids,
            attention_mask=attention,
            position_ids=positions,
            **{self._cache_kwarg: self.cache},
            use_cache=True,
        )

    def _prefill(self, sequences: list[list[int]]) -> None:
        """Encode ``sequences`` from scratch (left padded) into a fresh cache."""
        from transformers import DynamicCache

        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            attention[row, width - len(seq) :] = 1
        ids, attention = ids.to(self.device), attention.to(self.device)
        self.cache = DynamicCache()
        positions = (torch.cumsum(attention, dim=1) - 1).clamp(min=0)
        out = self._call(ids, attention, positions)
        self.stats.tokens_fed += int(attention.sum())
        self.attention = attention
        self.lengths = attention.sum(dim=1)
        self.last_logits = out.logits[:, -1].float()

    def _feed(self, parents: list[int], chunks: list[list[int]]) -> None:
        """Extend rows ``parents`` by ``chunks``, one token per forward pass (pads wait)."""
        index = torch.tensor(parents, dtype=torch.long, device=self.device)
        self.cache.reorder_cache(index)
        self.attention = self.attention[index]
        self.lengths = self.lengths[index]
        self.last_logits = self.last_logits[index]
        for t in range(max(len(c) for c in chunks)):
            step = [c[t] if t < len(c) else self.pad_token_id for c in chunks]
            real = [1 if t < len(c) else 0 for c in chunks]
            ids = torch.tensor(step, dtype=torch.long, device=self.device)[:, None]
            part = torch.tensor(real, dtype=torch.long, device=self.device)[:, None]
            self.attention = torch.cat([self.attention, part], dim=1)
            positions = (self.lengths[:, None] + part - 1).clamp(min=0)
            out = self._call(ids, self.attention, positions)
            self.stats.tokens_fed += sum(real)
            self.lengths = self.lengths + part[:, 0]
            logits = out.logits[:, -1].float()
            self.last_logits = torch.where(part.bool(), logits, self.last_logits)

    # -- search ----------------------------------------------------------------------------------

    def _complete(self, node: Node, titles: bool) -> bool:
        return not node["next"] or (titles and node["title_end"])

    def _step(
        self,
        beams: list[_Beam],
        sequences: list[torch.Tensor],
        allowed_fn: PrefixAllowedTokensFn,
        stage: _Stage,
        titles: bool,
    ) -> tuple[list[_Beam], list[int], list[list[int]]]:
        """Expand every beam once; returns the new live beams, their parent rows and chunks."""
        logits = self.last_logits[: len(beams)]
        mask = torch.full_like(logits, float("-inf"))
        allowed: list[list[int]] = []
        for row, seq in enumerate(sequences):
            tokens = sorted(allowed_fn(0, seq))
            self.stats.callback_calls += 1
            allowed.append(tokens)
            for token in tokens:
                mask[row, token] = 0.0
        logp = torch.log_softmax(logits + mask, dim=-1).cpu()
        candidates: list[tuple[float, int, int]] = []
        for row, tokens in enumerate(allowed):
            for token in tokens:
                candidates.append((beams[row].score + float(logp[row, token]), row, token))
        candidates.sort(key=lambda c: c[0], reverse=True)  # stable: ties keep (row, token) order
        threshold = stage.threshold(titles)
        live: list[_Beam] = []
        parents: list[int] = []
        chunks: list[list[int]] = []
        new_parked: list[tuple[float, list[int]]] = []
        ended_parents: list[int] = []
        ended_chunks: list[list[int]] = []
        for score, row, token in candidates[: stage.width]:
            beam = beams[row]
            node = self.trie.walk([*beam.tokens, token])
            chunk = [token]
            while not self._complete(node, titles) and len(node["next"]) == 1:
                forced = next(iter(node["next"]))
                chunk.append(forced)
                node = node["next"][forced]
            tokens = beam.tokens + chunk
            if not self._complete(node, titles):
                live.append(_Beam(tokens, score, beam.title_score))
                parents.append(row)
                chunks.append(chunk)
                continue
            # Token by token, a beam only learns that its forced run ends the stage when it gets
            # there: all but the last token of the run went through the model on the way.
            if len(chunk) > 1 and self.feed_ending_runs:
                ended_parents.append(row)
                ended_chunks.append(chunk[:-1])
            if score <= threshold:
                continue
            if not node["next"]:
                title_score = score if titles else beam.title_score
                stage.finished.append(NaiveHypothesis(list(node["passages"]), title_score, score))
            else:
                new_parked.append((score, tokens))
        parked = stage.parked + new_parked
        parked.sort(key=lambda item: item[0], reverse=True)
        stage.parked = parked[: self.title_width]
        # Live rows first: the next step reads rows 0..len(live)-1; ended rows are dropped then.
        return live, parents + ended_parents, chunks + ended_chunks

    def _run_stage(
        self, prompt: list[int], beams: list[_Beam], stage: _Stage, titles: bool
    ) -> None:
        """One stage as its own call: encode prompt + prefix of every beam, then beam search."""
        allowed_fn = self.trie.prefix_allowed_tokens_fn(len(prompt))
        if not beams:
            return
        self._prefill([prompt + b.tokens for b in beams])
        sequences = [torch.tensor(prompt + b.tokens, dtype=torch.long) for b in beams]
        try:
            while beams and max(b.score for b in beams) > stage.threshold(titles):
                beams, parents, chunks = self._step(beams, sequences, allowed_fn, stage, titles)
                if chunks:
                    self._feed(parents, chunks)
                n = len(beams)
                sequences = [
                    torch.cat([sequences[p], torch.tensor(c, dtype=torch.long)])
                    for p, c in zip(parents[:n], chunks[:n], strict=True)
                ]
        finally:
            self.cache = None
            self.attention = self.lengths = self.last_logits = None

    def decode(self, prompt: Sequence[int], k: int) -> list[NaiveHypothesis]:
        """Best hypotheses for one prompt, best first (like ``ConstrainedDecoder.decode``)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        prompt = [int(t) for t in prompt]
        self.title_width = max(self.title_beams, k)
        passage_width = max(self.passage_beams, k)
        finished: list[NaiveHypothesis] = []
        root = _Beam([], 0.0, 0.0)
        with torch.inference_mode():
            if self.trie.has_titles:
                titles = _Stage(self.title_width, finished)
                self._run_stage(prompt, [root], titles, titles=True)
                seeds = [_Beam(tokens, score, score) for score, tokens in titles.parked]
            else:
                seeds = [root]
            self._run_stage(prompt, seeds, _Stage(passage_width, finished), titles=False)
        return sorted(finished, key=lambda h: h.logprob, reverse=True)[:passage_width]

    def retrieve(self, prompt: Sequence[int], k: int) -> list[tuple[int, float, float]]:
        """``(passage index, logprob, title logprob)`` of the ``k`` best passages, best first.

        Ranked like ``SelfRetrievalModel`` with generation-only fusion: by log-probability,
        then by passage index.
        """
        entries = [
            (p, h.logprob, h.title_logprob) for h in self.decode(prompt, k) for p in h.passages
        ]
        entries.sort(key=lambda e: (-e[1], e[0]))
        return entries[:k]
