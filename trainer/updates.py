"""Keeping an artifact current: add documents (train new + replay), delete them (no training).

Both operations replace the artifact folder atomically, so it stays loadable at every moment; a
crash leaves the previous version in place.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from selfretrieval_integrations import artifact
from selfretrieval_integrations.base_models import tokenizer_fingerprint
from selfretrieval_integrations.corpus import ChunkingConfig, Corpus, Document
from selfretrieval_integrations.errors import CorpusError
from selfretrieval_integrations.model import SelfRetrievalModel, build_trie
from selfretrieval_integrations.rendering import PromptTemplate, Renderer
from selfretrieval_integrations.store import PassageStore

from .data import build_training_set, replay_sample
from .train import TrainingConfig, _finish, fit


def _history_entry(operation: str, **details: Any) -> dict[str, Any]:
    return {
        "operation": operation,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **details,
    }


def add_documents(
    path: str | Path,
    documents: Iterable[Document | Mapping[str, Any]],
    *,
    config: TrainingConfig | None = None,
    replay_ratio: float = 1.0,
    chunking: ChunkingConfig | None = None,
    device: str | None = None,
    show_progress: bool = True,
) -> SelfRetrievalModel:
    """Index new documents into the artifact at ``path``.

    Trains on indexing examples of the new passages plus a replay sample of old passages
    (``replay_ratio`` old passages per new one) so untouched documents stay retrievable, then
    rebuilds the trie and saves in place.
    """
    if replay_ratio < 0:
        raise ValueError(f"replay_ratio must be >= 0, got {replay_ratio}")
    path = Path(path)
    config = config or TrainingConfig(epochs=3)
    old = SelfRetrievalModel.from_pretrained(
        path, device=device, dtype="float32", trainable_adapter=True
    )
    old_corpus = Corpus.from_passages(list(old.store))
    new_corpus = old_corpus.with_documents(list(documents), chunking)
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
    checkpoints = path.with_name(path.name + ".checkpoints")
    run = fit(
        old.model, old.tokenizer, training_set, config, checkpoints, show_progress=show_progress
    )
    history = list(old.manifest.get("history") or [])
    history.append(
        _history_entry("add", passages=len(new_indices), replayed=len(replay), training=run.summary)
    )
    adapter_ok = old.manifest.get("weights") == "lora"
    return _finish(
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


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link a folder's files (instant, no extra disk), copying where links fail."""
    for item in source.rglob("*"):
        dest = target / item.relative_to(source)
        if item.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(item, dest)
        except OSError:
            shutil.copy2(item, dest)


def delete_documents(path: str | Path, ids: Sequence[str], *, show_progress: bool = False) -> int:
    """Remove documents (or single passages) by id from the trie and the store; no training.

    Returns the number of passages removed. Unknown ids raise ``CorpusError`` before anything
    changes; weights are kept as they are (hard-linked into the new version).
    """
    from transformers import AutoTokenizer

    path = Path(path)
    if isinstance(ids, str):
        ids = [ids]
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise CorpusError("give at least one document or passage id to delete")
    manifest = artifact.read_manifest(path, verify=True)
    store = PassageStore.load(path / "store")
    passages = list(store)
    doc_ids = {p.doc_id for p in passages}
    passage_ids = {p.id for p in passages}
    unknown = [i for i in ids if i not in doc_ids and i not in passage_ids]
    if unknown:
        raise CorpusError(
            f"{len(unknown)} id(s) are neither document nor passage ids of {path}: "
            f"{', '.join(map(repr, unknown[:5]))}{' ...' if len(unknown) > 5 else ''}"
        )
    drop = set(ids)
    kept = [p for p in passages if p.doc_id not in drop and p.id not in drop]
    if not kept:
        raise CorpusError(
            "deleting these ids would leave the corpus empty; delete the artifact folder instead"
        )
    corpus = Corpus.from_passages(kept)
    tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer")
    template = PromptTemplate.from_dict(manifest.get("prompt_template", {}))
    trie = build_trie(tokenizer, template, corpus, show_progress=show_progress)
    removed = len(passages) - len(kept)
    with artifact.atomic_folder(path) as tmp:
        for folder in ("tokenizer", "model", "adapter"):
            if (path / folder).is_dir():
                _link_or_copy(path / folder, tmp / folder)
        trie.save(tmp / "trie")
        artifact.save_json(
            tmp / "trie" / "fingerprint.json",
            {
                "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
                "prompt_template": template.to_dict(),
            },
        )
        PassageStore(kept).save(tmp / "store")
        history = list(manifest.get("history") or [])
        history.append(_history_entry("delete", ids=ids[:100], passages=removed))
        updated = {k: v for k, v in manifest.items() if k != "files"}
        updated.update(
            corpus_checksum=corpus.checksum(),
            n_passages=len(kept),
            history=history,
            trie={
                **manifest.get("trie", {}),
                "n_passages": len(kept),
                "n_nodes": int(trie.n_nodes),
            },
        )
        artifact.write_manifest(tmp, updated)
    return removed
