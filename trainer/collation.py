"""Batches for the transformers ``Trainer``: examples packed into one row, or right-padded where
transformers cannot keep packed examples apart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from selfretrieval_integrations.retrieval import IGNORE_INDEX, EncodedExample


class ExampleDataset(torch.utils.data.Dataset):
    """Encoded examples as the dicts ``Trainer`` feeds to the collator."""

    def __init__(self, examples: Sequence[EncodedExample], max_length: int) -> None:
        self.examples = examples
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        example = self.examples[index]
        return {
            "input_ids": example.input_ids[: self.max_length],
            "labels": example.labels[: self.max_length],
        }


def packing_supported() -> bool:
    """Whether transformers isolates packed sequences (position ids restarting at 0).

    transformers 5 builds a block-diagonal attention mask from such position ids for every
    attention implementation; older releases only do so for flash-attention, so there the
    collator pads instead.
    """
    try:
        from transformers import masking_utils
    except ImportError:  # pragma: no cover - very old transformers
        return False
    return hasattr(masking_utils, "find_packed_sequence_indices")


class PackingCollator:
    """Packs a batch's examples into one row (no padding), or right-pads them.

    Packed rows restart ``position_ids`` at 0 for each example, which makes transformers mask
    attention across examples; every example's first label is already ignored (it is a prompt
    token), so no example learns to predict across a boundary. Counts real against computed tokens
    so the training summary can report the padding fraction.
    """

    def __init__(self, pad_token_id: int, *, pack: bool | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pack = packing_supported() if pack is None else pack
        self.real_tokens = 0
        self.computed_tokens = 0

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        if self.pack:
            ids = [t for f in features for t in f["input_ids"]]
            labels = [t for f in features for t in f["labels"]]
            positions = [i for f in features for i in range(len(f["input_ids"]))]
            self.real_tokens += len(ids)
            self.computed_tokens += len(ids)
            return {
                "input_ids": torch.as_tensor([ids], dtype=torch.long),
                "labels": torch.as_tensor([labels], dtype=torch.long),
                "position_ids": torch.as_tensor([positions], dtype=torch.long),
                "use_cache": False,
            }
        width = max(len(f["input_ids"]) for f in features)
        batch_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        batch_labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            batch_ids[row, :n] = torch.as_tensor(feature["input_ids"])
            batch_labels[row, :n] = torch.as_tensor(feature["labels"])
            attention[row, :n] = 1
        self.real_tokens += int(attention.sum())
        self.computed_tokens += attention.numel()
        return {"input_ids": batch_ids, "labels": batch_labels, "attention_mask": attention}

    @property
    def padding_fraction(self) -> float:
        if not self.computed_tokens:
            return 0.0
        return 1.0 - self.real_tokens / self.computed_tokens
