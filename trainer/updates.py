"""Keeping an artifact current: add documents (train new + replay); delete them (no training).

``delete_documents`` is the library's own (``selfretrieval_integrations.delete_documents``),
re-exported here beside ``add_documents``. Both write a new generation of the artifact while
holding its writer lock from reading the current generation to committing, so concurrent writes
never lose one another's change and a crash leaves the previous generation current.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from selfretrieval_integrations import artifact
from selfretrieval_integrations.corpus import ChunkingConfig, Corpus, Document
from selfretrieval_integrations.errors import CorpusError
from selfretrieval_integrations.index import PassageStore
from selfretrieval_integrations.retrieval import (
    Renderer,
    SelfRetrievalModel,
    build_trie,
    delete_documents,
)

from .config import TrainingConfig
from .data import build_training_set, replay_sample
from .train import fit, save_artifact

__all__ = ["add_documents", "delete_documents"]


def add_documents(
    path: str | Path,
    documents: Iterable[Document | Mapping[str, Any]],
    *,
    config: TrainingConfig | None = None,
    replay_ratio: float = 1.0,
    chunking: ChunkingConfig | None = None,
    device: str | None = None,
    show_progress: bool = True,
    lock_timeout: float | None = None,
) -> SelfRetrievalModel:
    """Index new documents into the artifact at ``path``.

    Trains on indexing examples of the new passages plus a replay sample of old passages
    (``replay_ratio`` old passages per new one) so untouched documents stay retrievable, then
    rebuilds the trie and saves a new generation. The artifact's writer lock is held throughout
    (other writers wait up to their ``lock_timeout``); readers are never blocked.
    """
    if replay_ratio < 0:
        raise ValueError(f"replay_ratio must be >= 0, got {replay_ratio}")
    path = Path(path)
    config = config or TrainingConfig(epochs=3)
    with artifact.writer_lock(path, "add", timeout=lock_timeout):
        return _add(path, list(documents), config, replay_ratio, chunking, device, show_progress)


def _add(
    path: Path,
    documents: list[Document | Mapping[str, Any]],
    config: TrainingConfig,
    replay_ratio: float,
    chunking: ChunkingConfig | None,
    device: str | None,
    show_progress: bool,
) -> SelfRetrievalModel:
    """``add_documents`` with the lock held: reads the current generation, writes the next."""
    old = SelfRetrievalModel.from_pretrained(
        path, device=device, dtype="float32", trainable_adapter=True
    )
    old_corpus = Corpus.from_passages(list(old.store))
    new_corpus = old_corpus.with_documents(documents, chunking)
    new_indices = list(range(len(old_corpus), len(new_corpus)))
    if not new_indices:
        raise CorpusError("no new passages to add")
    trie = build_trie(old.tokenizer, old.template, new_corpus, show_progress=show_progress)
    n_replay = min(len(old_corpus), math.ceil(replay_ratio * len(new_indices)))
    replay = replay_sample(len(old_corpus), n_replay, seed=config.seed)
    mix = replace(config.mix, assessment=False)
    training_set = build_training_set(
        Renderer(old.tokenizer, old.template),
        new_corpus,
        trie,
        mix=mix,
        passages=new_indices + list(replay),
    )
    checkpoints = artifact.checkpoint_dir(path)
    run = fit(
        old.model, old.tokenizer, training_set, config, checkpoints, show_progress=show_progress
    )
    history = list(old.manifest.get("history") or [])
    history.append(
        artifact.history_entry(
            "add", passages=len(new_indices), replayed=len(replay), training=run.summary
        )
    )
    adapter_ok = old.manifest.get("weights") == "lora"
    return save_artifact(
        run,
        old.tokenizer,
        trie,
        PassageStore(list(new_corpus)),
        old.template,
        old.config,
        old.base_model if adapter_ok else None,
        new_corpus.checksum(),
        path,
        history=history,
        base_label=old.base_model,
        previous_training=old.manifest.get("training"),
    )
