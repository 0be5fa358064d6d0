"""The target-logits loss equals the model's own loss and gradients, in one step and in training."""

from __future__ import annotations

import pytest
import torch
from selfretrieval_trainer.collation import PackingCollator
from selfretrieval_trainer.loss import target_logits_loss
from selfretrieval_trainer.train import TrainingConfig, train

from selfretrieval_integrations.retrieval import Renderer

from .helpers import DOCS


@pytest.mark.parametrize("pack", [True, False])
def test_target_logits_loss_equals_the_model_loss_and_gradients(tiny_model, pack):
    model, tokenizer = tiny_model
    renderer = Renderer(tokenizer)
    examples = [
        renderer.example(q, renderer.encode_target("Title", text))
        for q, text in [("who?", "A short passage."), ("what is it", "Another, longer passage.")]
    ]
    batch = PackingCollator(0, pack=pack)(
        [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    )
    gradients = []
    for compute in (lambda: model(**batch).loss, lambda: target_logits_loss(model, batch)):
        model.zero_grad()
        loss = compute()
        loss.backward()
        gradients.append((loss.detach(), model.lm_head.weight.grad.clone()))
    (full_loss, full_grad), (target_loss, target_grad) = gradients
    model.zero_grad()
    assert torch.allclose(full_loss, target_loss, atol=1e-5)
    assert torch.allclose(full_grad, target_grad, atol=1e-6)
    # Normalised by a given count (the accumulated batch's), as Trainer passes it.
    targets = int((batch["labels"][:, 1:] != -100).sum())
    with torch.no_grad():
        halved = target_logits_loss(model, batch, num_items_in_batch=torch.tensor(2 * targets))
    assert torch.allclose(halved, full_loss / 2, atol=1e-5)


def test_target_logits_training_matches_full_logits_training(tmp_path):
    weights, losses = [], []
    for name, only in (("target", True), ("full", False)):
        config = TrainingConfig(
            epochs=1,
            batch_size=4,
            gradient_accumulation_steps=2,
            save_steps=1000,
            target_logits_only=only,
        )
        model = train("tiny", DOCS, tmp_path / name, config=config, show_progress=False)
        assert model.manifest["training"]["target_logits_only"] is only
        weights.append(model.model.state_dict())
        losses.append(model.manifest["training"]["train_loss"])
    # The reported loss catches a scaling error that Adam's updates would hide.
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for key, value in weights[0].items():
        assert torch.allclose(value, weights[1][key], atol=1e-4), key
