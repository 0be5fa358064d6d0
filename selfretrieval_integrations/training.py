"""The one place where the library reaches the trainer (``selfretrieval_trainer``).

Dependencies run one way: the trainer imports the library's public API, never the reverse. Library
code that has to train (the CLI's ``train`` and ``add``, the quickstart, the framework adapters'
``from_documents``) asks this module for the trainer; it is imported on first use, after checking
that the ``train`` extra is installed, so a missing package is named with the command that
installs it instead of surfacing mid-run.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from .extras import missing_extra

#: What the trainer needs beyond the base install (the ``train`` extra).
TRAIN_EXTRA_PACKAGES = ("peft", "accelerate")


@dataclass(frozen=True)
class Trainer:
    """The trainer's entry points, as the library uses them."""

    train: Any
    """``selfretrieval_trainer.train.train``: internalize a corpus into an artifact."""
    add_documents: Any
    """``selfretrieval_trainer.updates.add_documents``: train new documents in."""
    TrainingConfig: type
    MixConfig: type
    split_validation: Any
    """``selfretrieval_trainer.data.split_validation``: the questions training holds out."""


def load_trainer() -> Trainer:
    """The trainer, or an ``ImportError`` that says which packages are missing and how to fix it."""
    missing = [name for name in TRAIN_EXTRA_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise missing_extra(" and ".join(missing), "train", "training")
    from selfretrieval_trainer.data import MixConfig, split_validation
    from selfretrieval_trainer.train import TrainingConfig, train
    from selfretrieval_trainer.updates import add_documents

    return Trainer(
        train=train,
        add_documents=add_documents,
        TrainingConfig=TrainingConfig,
        MixConfig=MixConfig,
        split_validation=split_validation,
    )
