"""Packed batches: the same loss as padded ones, without padding."""

from __future__ import annotations

import torch
from selfretrieval_trainer.collation import PackingCollator

from selfretrieval_integrations.retrieval import Renderer


def test_packed_batches_give_the_same_loss_as_padded_ones(tiny_model):
    model, tokenizer = tiny_model
    renderer = Renderer(tokenizer)
    examples = [
        renderer.example(q, renderer.encode_target("Title", text))
        for q, text in [("who?", "A short passage."), ("what is it", "Another, longer passage.")]
    ]
    features = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    packed = PackingCollator(0, pack=True)
    padded = PackingCollator(0, pack=False)
    with torch.no_grad():
        loss_packed = model(**packed(features)).loss
        loss_padded = model(**padded(features)).loss
    assert packed.padding_fraction == 0.0 and padded.padding_fraction > 0
    assert torch.allclose(loss_packed, loss_padded, atol=1e-5)
