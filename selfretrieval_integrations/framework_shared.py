"""What the LangChain and LlamaIndex adapters share; no framework is imported here.

Both frameworks' classes are thin: they turn their documents into this library's ``Document`` /
``Passage``, build or train one ``SelfRetrievalModel``, and turn ``RetrievalResult`` back into their
own types. Keeping those steps in one place makes both adapters name, filter and train alike.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from selfretrieval_integrations.corpus import Corpus
from selfretrieval_integrations.errors import QueryError
from selfretrieval_integrations.index import Filter, compile_filter, filter_mask
from selfretrieval_integrations.retrieval import (
    RetrievalConfig,
    RetrievalResult,
    SelfRetrievalModel,
)
from selfretrieval_integrations.training import load_trainer

#: Metadata keys the adapters set from the passage itself (they win over user metadata of the same
#: name, exactly as the filter language resolves these names to the passage's own fields).
PASSAGE_KEYS = ("passage_id", "doc_id", "title")


def missing_framework(package: str, extra: str, error: ImportError) -> ImportError:
    """The ImportError raised when an optional framework is not installed."""
    return ImportError(
        f"{package} is needed for this module but could not be imported ({error}). It is an "
        f'optional extra: pip install "selfretrieval-integrations[{extra}]"'
    )


def checked_model(model: object) -> SelfRetrievalModel:
    """``model`` itself, after checking it is a ``SelfRetrievalModel`` (a clear error if not)."""
    if not isinstance(model, SelfRetrievalModel):
        raise TypeError(
            f"model must be a SelfRetrievalModel, got {type(model).__name__}; load one with "
            "SelfRetrievalModel.from_pretrained(path) or build one with from_documents(...)"
        )
    return model


def checked_k(value: object, name: str) -> int:
    """A positive int (``bool`` is refused: ``True`` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise QueryError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def checked_threshold(value: object) -> float | None:
    """A score cut-off, or None for none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise QueryError(f"score_threshold must be a number or None, got {value!r}")
    return float(value)


def checked_filter(spec: object) -> Any:
    """A filter validated before any query (mapping operators are checked at once)."""
    if spec is None or isinstance(spec, np.ndarray):
        return spec
    if isinstance(spec, Mapping):
        compile_filter(spec)
        return dict(spec)
    if callable(spec):
        return spec
    raise QueryError(
        "filter must be a mapping such as {'doc_id': {'$in': ['a', 'b']}}, a callable "
        f"Passage -> bool, a boolean numpy mask over passages, or None; got {type(spec).__name__}"
    )


def combined_mask(model: SelfRetrievalModel, *filters: Filter) -> np.ndarray | None:
    """The passages every given filter allows (None when no filter is set).

    A per-call filter narrows the retriever's own filter instead of replacing it, so a filter set
    at construction (access control) cannot be widened by a caller.
    """
    mask: np.ndarray | None = None
    for spec in filters:
        part = filter_mask(model.store, spec)
        if part is not None:
            mask = part.copy() if mask is None else mask & part
    return mask


def search(
    model: SelfRetrievalModel, query: str, k: int, mask: np.ndarray | None, threshold: float | None
) -> list[RetrievalResult]:
    """``model.retrieve`` with the filter enforced in decoding and an optional score cut-off."""
    results = model.retrieve(query, k=k, filter=mask)
    if threshold is not None:
        results = [r for r in results if r.score >= threshold]
    return results


def result_metadata(result: RetrievalResult) -> dict[str, Any]:
    """LangChain ``Document.metadata`` of a result: passage metadata, ids, title and scores."""
    return {
        **result.metadata,
        "passage_id": result.passage_id,
        "doc_id": result.doc_id,
        "title": result.title,
        "score": result.score,
        "rank": result.rank,
        "relevance": result.relevance,
    }


def split_title(metadata: Mapping[str, Any] | None, title_key: str) -> tuple[str, dict[str, Any]]:
    """``(title, other metadata)`` of a framework document whose title sits in its metadata."""
    rest = dict(metadata or {})
    title = rest.pop(title_key, None)
    return ("" if title is None else title), rest


def build_model(
    corpus: Corpus,
    *,
    base_model: str | tuple[Any, Any],
    train: bool,
    out: str | Path | None,
    training_config: Any = None,
    retrieval_config: RetrievalConfig | None = None,
    queries: Mapping[str, str] | None = None,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    device: str | None = None,
    show_progress: bool = False,
) -> SelfRetrievalModel:
    """Train ``corpus`` into ``base_model`` (or index it zero-shot) and return the model.

    With ``train`` the trainer writes its artifact to ``out``, or to a temporary folder that is
    removed afterwards (the returned model lives in memory). Without it, ``out`` (if given)
    receives the untrained artifact.
    """
    if not train:
        if queries is not None or qrels is not None or training_config is not None:
            raise ValueError(
                "queries, qrels and training_config are only used with train=True; drop them or "
                "set train=True"
            )
        model = SelfRetrievalModel.from_base(
            base_model, corpus, config=retrieval_config, device=device
        )
        if out is not None:
            model.save_pretrained(out)
        return model
    run_training = load_trainer().train
    if out is not None:
        return run_training(
            base_model,
            corpus,
            out,
            queries=queries,
            qrels=qrels,
            config=training_config,
            retrieval_config=retrieval_config,
            device=device,
            show_progress=show_progress,
        )
    with tempfile.TemporaryDirectory(prefix="selfretrieval-") as folder:
        return run_training(
            base_model,
            corpus,
            Path(folder) / "artifact",
            queries=queries,
            qrels=qrels,
            config=training_config,
            retrieval_config=retrieval_config,
            device=device,
            show_progress=show_progress,
        )


def check_items(items: object, kind: type, what: str) -> Sequence[Any]:
    """``items`` as a list, each an instance of ``kind`` (the frameworks' document classes)."""
    if isinstance(items, (str, bytes, Mapping, kind)):
        raise TypeError(f"give a list of {what}, got a single {type(items).__name__}")
    listed = list(items)  # type: ignore[call-overload]
    if not listed:
        raise ValueError(f"no {what} given: the corpus would be empty")
    wrong = sorted({type(item).__name__ for item in listed if not isinstance(item, kind)})
    if wrong:
        raise TypeError(f"expected {what}, got {', '.join(wrong)}")
    return listed
