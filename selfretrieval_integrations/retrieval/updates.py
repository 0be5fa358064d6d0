"""Deleting documents: exact and instant, because nothing is trained.

The passages leave the store and the trie, so they can never be generated again; the weights are
hard-linked into the new generation unchanged. The write holds the artifact's writer lock from
reading the current generation to committing the next, so concurrent deletes and adds never lose
one another's change. Needs only the base install.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from selfretrieval_integrations import artifact
from selfretrieval_integrations.base_models import tokenizer_fingerprint
from selfretrieval_integrations.corpus import Corpus, Passage
from selfretrieval_integrations.errors import CorpusError
from selfretrieval_integrations.index import PassageKeys, PassageStore

from .rendering import PromptTemplate


def remaining_passages(passages: Sequence[Passage], ids: Iterable[str]) -> list[Passage]:
    """``passages`` without the documents or passages named by ``ids``.

    Unknown ids raise ``CorpusError`` (nothing is changed), as does emptying the corpus.
    """
    return [passages[i] for i in remaining_indices(passages, ids)]


def remaining_indices(passages: Sequence[Passage], ids: Iterable[str]) -> list[int]:
    """The positions of ``remaining_passages``."""
    ids = [ids] if isinstance(ids, str) else list(dict.fromkeys(ids))
    if not ids:
        raise CorpusError("give at least one document or passage id to delete")
    known = {p.doc_id for p in passages} | {p.id for p in passages}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise CorpusError(
            f"{len(unknown)} id(s) are neither document nor passage ids of this corpus: "
            f"{', '.join(map(repr, unknown[:5]))}{' ...' if len(unknown) > 5 else ''}"
        )
    drop = set(ids)
    kept = [i for i, p in enumerate(passages) if p.doc_id not in drop and p.id not in drop]
    if not kept:
        raise CorpusError(
            "deleting these ids would leave the corpus empty; delete the artifact folder instead"
        )
    return kept


def delete_documents(
    path: str | Path,
    ids: Sequence[str],
    *,
    show_progress: bool = False,
    lock_timeout: float | None = None,
) -> int:
    """Remove documents (or single passages) by id from the artifact at ``path``; no training.

    Returns the number of passages removed. Unknown ids raise ``CorpusError`` before anything
    changes. When this returns, the new generation is current: every load or ``refresh()`` from
    then on sees the documents gone.
    """
    from transformers import AutoTokenizer

    from .model import passage_keys  # the model module uses this one: imported when called

    path = Path(path)
    ids = [ids] if isinstance(ids, str) else list(dict.fromkeys(ids))
    with artifact.new_generation(path, "delete", lock_timeout=lock_timeout) as new:
        current, _ = artifact.resolve(path)  # read under the lock: no other write in between
        # The weights are linked into the new generation untouched: only the index is checked.
        manifest = artifact.read_manifest(current, verify=True, verify_weights=False)
        passages = list(PassageStore.load(current / artifact.STORE_DIR))
        indices = remaining_indices(passages, ids)
        kept = [passages[i] for i in indices]
        corpus = Corpus.from_passages(kept)
        tokenizer = AutoTokenizer.from_pretrained(current / artifact.TOKENIZER_DIR)
        template = PromptTemplate.from_dict(manifest.get("prompt_template", {}))
        # The keys a previous delete saved spare tokenizing the corpus again (the trie is the same).
        keys = PassageKeys.load(current / artifact.KEYS_DIR)
        if keys is None or len(keys) != len(passages):
            keys = passage_keys(tokenizer, template, passages, show_progress=show_progress)
        keys = keys.subset(indices)
        trie = keys.trie(show_progress=show_progress)
        keys.save(new / artifact.KEYS_DIR)
        removed = len(passages) - len(kept)
        for folder in artifact.WEIGHT_DIRS:
            if (current / folder).is_dir():
                artifact.link_or_copy(current / folder, new / folder)
        artifact.save_index(
            new,
            trie,
            PassageStore(kept),
            tokenizer_fingerprint=tokenizer_fingerprint(tokenizer),
            prompt_template=template.to_dict(),
        )
        history = list(manifest.get("history") or [])
        history.append(artifact.history_entry("delete", ids=ids[:100], passages=removed))
        updated = {k: v for k, v in manifest.items() if k not in ("files", "generation")}
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
        artifact.write_manifest(new, updated)
    return removed
