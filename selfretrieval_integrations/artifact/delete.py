"""Deleting documents from an artifact: exact and instant, because nothing is trained.

The passages leave the store and the trie, so they can never be generated again; the weights are
hard-linked into the new version unchanged. Needs only the base install.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from selfretrieval_integrations.base_models import tokenizer_fingerprint
from selfretrieval_integrations.corpus import Corpus
from selfretrieval_integrations.errors import CorpusError
from selfretrieval_integrations.index import PassageStore
from selfretrieval_integrations.retrieval import PromptTemplate, build_trie

from .files import atomic_folder, link_or_copy
from .layout import STORE_DIR, TOKENIZER_DIR, WEIGHT_DIRS, save_index
from .manifest import history_entry, read_manifest, write_manifest


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
    manifest = read_manifest(path, verify=True)
    passages = list(PassageStore.load(path / STORE_DIR))
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
    tokenizer = AutoTokenizer.from_pretrained(path / TOKENIZER_DIR)
    template = PromptTemplate.from_dict(manifest.get("prompt_template", {}))
    trie = build_trie(tokenizer, template, corpus, show_progress=show_progress)
    removed = len(passages) - len(kept)
    with atomic_folder(path) as tmp:
        for folder in WEIGHT_DIRS:
            if (path / folder).is_dir():
                link_or_copy(path / folder, tmp / folder)
        save_index(
            tmp,
            trie,
            PassageStore(kept),
            tokenizer_fingerprint=tokenizer_fingerprint(tokenizer),
            prompt_template=template.to_dict(),
        )
        history = list(manifest.get("history") or [])
        history.append(history_entry("delete", ids=ids[:100], passages=removed))
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
        write_manifest(tmp, updated)
    return removed
