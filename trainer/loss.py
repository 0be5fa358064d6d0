"""The training loss: next-token cross-entropy from the logits of trained positions only, and the
``Trainer`` subclass that uses it.

Targets are a small share of the tokens, so projecting only their positions to the vocabulary
saves most of that work; the loss and gradients are the model's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import Trainer

from selfretrieval_integrations.base_models import logits_to_keep_kwarg
from selfretrieval_integrations.retrieval import IGNORE_INDEX

from .config import TrainingError


def target_positions(labels: torch.Tensor) -> torch.Tensor:
    """Positions whose next token is trained in some row (the logits the loss needs)."""
    return (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)


def target_logits_loss(
    model: Any, inputs: Mapping[str, Any], num_items_in_batch: Any = None
) -> torch.Tensor:
    """Next-token cross-entropy computed from the trained positions' logits only.

    Equals the model's own loss: summed over target tokens, divided by ``num_items_in_batch``
    (the target count of the whole accumulated batch, as ``Trainer`` passes it) or by this
    batch's count.
    """
    inputs = dict(inputs)
    labels = inputs.pop("labels")
    positions = target_positions(labels)
    logits = model(**inputs, logits_to_keep=positions).logits
    targets = labels[:, 1:][:, positions]
    loss = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1).to(logits.device),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    if num_items_in_batch is None:
        num_items_in_batch = (targets != IGNORE_INDEX).sum()
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.to(loss.device).clamp(min=1)
    else:
        num_items_in_batch = max(int(num_items_in_batch), 1)
    return loss / num_items_in_batch


class TargetLogitsTrainer(Trainer):
    """``Trainer`` computing the loss from the trained positions' logits only."""

    # Normalised by the accumulated batch's target count (or scaled below), like the model's own
    # loss with num_items_in_batch.
    loss_is_scaled_for_ga = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = target_logits_loss(model, inputs, num_items_in_batch)
        if num_items_in_batch is None:
            loss = loss / self.current_gradient_accumulation_steps
        elif self.args.average_tokens_across_devices:
            # num_items_in_batch counts every process's targets; gradients are averaged.
            loss = loss * self.accelerator.num_processes
        if return_outputs:
            raise TrainingError("target_logits_only does not return model outputs")
        return loss


def trainer_class(target_logits_only: bool, model: Any) -> type[Trainer]:
    """``TargetLogitsTrainer``, or ``Trainer`` where it would not compute the same loss.

    Falls back to ``Trainer`` for models without a ``logits_to_keep`` argument, and on
    transformers releases whose ``Trainer`` has no ``loss_is_scaled_for_ga`` (they rescale a
    custom loss for gradient accumulation by rules of their own).
    """
    if (
        not target_logits_only
        or logits_to_keep_kwarg(model) != "logits_to_keep"
        or not hasattr(Trainer, "loss_is_scaled_for_ga")
    ):
        return Trainer
    return TargetLogitsTrainer
