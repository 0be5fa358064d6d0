"""Shared data of the trainer tests: a few one-sentence documents and a fast configuration."""

from __future__ import annotations

from selfretrieval_trainer.train import TrainingConfig

from selfretrieval_integrations import Document

# LoRA: the adapter path (the default is full fine-tuning, tested on its own).
FAST = TrainingConfig(epochs=1, full_finetune=False, batch_size=8, save_steps=1000, logging_steps=5)
DOCS = [
    Document(id=f"doc{i}", title=f"Topic {i}", text=f"Fact number {i} is about item {i * 7}.")
    for i in range(6)
]
