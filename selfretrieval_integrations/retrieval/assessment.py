"""Self-assessment: the model judges whether a passage answers the query.

As in the paper, relevance is ``1 - exp(-L)`` where ``L`` is the mean token loss of the refusal
answer (``cannot extract answer``) after the passage: a model that would rather *not* refuse finds
the passage relevant. The query prefix is encoded once and its key/value cache is shared by all
passages of a batch. Passages need not be in the trie, so results of other retrievers can be
reranked.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from selfretrieval_integrations.base_models import cache_kwarg, logits_to_keep_kwarg
from selfretrieval_integrations.corpus import cut_words
from selfretrieval_integrations.validation import checked_int

from .rendering import Renderer


@dataclass(frozen=True)
class AssessmentConfig:
    """How passages are scored for relevance."""

    batch_size: int = 16
    """Passages scored per forward pass (they share the query's cache)."""
    max_passage_words: int = 300
    """Longer passages are cut to this many words before scoring (the start carries the topic)."""
    max_passage_tokens: int = 512
    """Passages handed to ``assess`` (or ``SelfReranker``) are cut to this many tokens first,
    with a warning: a bound that holds also for text without spaces."""

    def __post_init__(self) -> None:
        checked_int(self.batch_size, "AssessmentConfig.batch_size")
        checked_int(self.max_passage_words, "AssessmentConfig.max_passage_words")
        checked_int(self.max_passage_tokens, "AssessmentConfig.max_passage_tokens")


class SelfAssessor:
    """Scores (query, passage) relevance with the refusal likelihood, in batches."""

    def __init__(
        self, model: Any, renderer: Renderer, config: AssessmentConfig | None = None
    ) -> None:
        self.model = model
        self.renderer = renderer
        self.config = config or AssessmentConfig()
        self.pad_token_id = int(
            renderer.tokenizer.pad_token_id
            if renderer.tokenizer.pad_token_id is not None
            else renderer.eos_id
        )
        self._cache_kwarg = cache_kwarg(model)
        self._logits_kwarg = logits_to_keep_kwarg(model)

    def _keep_kwargs(self, n: int) -> dict[str, int]:
        """Ask the model for the logits of the last ``n`` positions only, when it can."""
        return {self._logits_kwarg: n} if self._logits_kwarg else {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def refusal_loss(self, query: str, passages: Sequence[tuple[str, str]]) -> np.ndarray:
        """Mean token loss of the refusal after each ``(title, text)``."""
        if not passages:
            return np.zeros(0, dtype=np.float64)
        from transformers import DynamicCache

        renderer, device = self.renderer, self.device
        prompt = renderer.encode_prompt(query)
        refusal = renderer.refusal_ids()
        losses = np.zeros(len(passages), dtype=np.float64)
        with torch.inference_mode():
            prompt_ids = torch.as_tensor([prompt], dtype=torch.long, device=device)
            prompt_cache = DynamicCache()
            self.model(
                input_ids=prompt_ids,
                **{self._cache_kwarg: prompt_cache},
                use_cache=True,
                **self._keep_kwargs(1),
            )
            for start in range(0, len(passages), self.config.batch_size):
                batch = passages[start : start + self.config.batch_size]
                contexts = [
                    renderer.assessment_context_ids(
                        title, cut_words(text, self.config.max_passage_words)
                    )
                    for title, text in batch
                ]
                # Teacher-force context + refusal. Rows are padded on the left (masked, with
                # positions continuing the prompt) so every refusal ends the row: only the last
                # len(refusal) positions need logits, not the whole vocabulary at every token.
                chunks = [c + refusal[:-1] for c in contexts]
                width = max(len(c) for c in chunks)
                ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
                real = torch.zeros((len(batch), width), dtype=torch.long)
                positions = torch.full((len(batch), width), len(prompt), dtype=torch.long)
                for row, chunk in enumerate(chunks):
                    pad = width - len(chunk)
                    ids[row, pad:] = torch.as_tensor(chunk)
                    real[row, pad:] = 1
                    positions[row, pad:] = len(prompt) + torch.arange(len(chunk))
                ids, real, positions = ids.to(device), real.to(device), positions.to(device)
                cache = copy.deepcopy(prompt_cache)
                cache.batch_repeat_interleave(len(batch))
                attention = torch.cat(
                    [torch.ones((len(batch), len(prompt)), dtype=torch.long, device=device), real],
                    dim=1,
                )
                logits = self.model(
                    input_ids=ids,
                    attention_mask=attention,
                    position_ids=positions,
                    **{self._cache_kwarg: cache},
                    use_cache=True,
                    **self._keep_kwargs(len(refusal)),
                ).logits[:, -len(refusal) :]
                logp = torch.log_softmax(logits.float(), dim=-1)
                target = torch.as_tensor(refusal, device=device)
                nll = -logp.gather(-1, target[None, :, None].expand(len(batch), -1, 1))[..., 0]
                losses[start : start + len(batch)] = nll.mean(dim=1).double().cpu().numpy()
        return losses

    def relevance(self, query: str, passages: Sequence[tuple[str, str]]) -> np.ndarray:
        """Relevance in [0, 1): ``1 - exp(-L)`` with ``L`` the refusal's mean token loss."""
        return 1.0 - np.exp(-self.refusal_loss(query, passages))
