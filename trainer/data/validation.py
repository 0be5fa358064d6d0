"""A held-out fold of the training questions, for choosing weights after training.

Fusion weights and skip thresholds must be fitted on questions the model never trained on: a
trained question's passage is generated with a confidence no new question gets, so a weight
fitted on it overrates the model. The fold is drawn per query id by a seeded shuffle, so the same
qrels always give the same fold.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

__all__ = ["split_validation"]


def split_validation(
    qrels: Mapping[str, Mapping[str, int]], fraction: float, seed: int = 0
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """``(fit, held_out)``: ``fraction`` of the query ids (rounded down) go to ``held_out``."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    ids = sorted(qrels)
    random.Random(seed).shuffle(ids)
    held = set(ids[: int(len(ids) * fraction)])
    fit = {q: dict(qrels[q]) for q in sorted(qrels) if q not in held}
    held_out = {q: dict(qrels[q]) for q in sorted(held)}
    return fit, held_out
