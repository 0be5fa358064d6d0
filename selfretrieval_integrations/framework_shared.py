"""What the LangChain and LlamaIndex adapters share; no framework is imported here.

Both frameworks' classes are thin: they turn their documents into this library's ``Document`` /
``Passage``, build or train one ``SelfRetrievalModel``, and turn ``RetrievalResult`` back into their
own types. Keeping those steps in one place makes both adapters name, filter and train alike.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from selfretrieval_integrations.corpus import ChunkingConfig, Corpus
from selfretrieval_integrations.errors import QueryError
from selfretrieval_integrations.index import Filter, compile_filter, filter_mask
from selfretrieval_integrations.retrieval import (
    RetrievalConfig,
    RetrievalResult,
    SelfRetrievalModel,
)
from selfretrieval_integrations.training import load_trainer
from selfretrieval_integrations.validation import checked_int

#: Metadata keys the adapters set from the passage itself (they win over user metadata of the same
#: name, exactly as the filter language resolves these names to the passage's own fields).
PASSAGE_KEYS = ("passage_id", "doc_id", "title")


def checked_model(model: object) -> SelfRetrievalModel:
    """``model`` itself, after checking it is a ``SelfRetrievalModel`` (a clear error if not)."""
    if not isinstance(model, SelfRetrievalModel):
        raise TypeError(
            f"model must be a SelfRetrievalModel, got {type(model).__name__}; load one with "
            "SelfRetrievalModel.from_pretrained(path) or build one with from_documents(...)"
        )
    return model


def checked_top_n(value: object) -> int | None:
    """A reranker's ``top_n``: a positive int, or None to keep every document."""
    return None if value is None else checked_int(value, "top_n", error=QueryError)


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


def combined_filter(model: SelfRetrievalModel, *filters: Filter) -> Filter:
    """One filter that allows what every given filter allows (None when no filter is set).

    A per-call filter narrows the retriever's own filter instead of replacing it, so a filter set
    at construction (access control) cannot be widened by a caller. Filters by field or function
    stay a predicate that the model applies to the passages of the generation it answers from,
    so a refresh between the two steps cannot misalign them; only boolean masks (positions in the
    current store) are combined as masks.
    """
    given = [spec for spec in filters if spec is not None]
    if len(given) <= 1:
        return given[0] if given else None
    if any(isinstance(spec, np.ndarray) for spec in given):
        masks = [filter_mask(model.store, spec) for spec in given]
        return np.logical_and.reduce(masks)
    predicates = [spec if callable(spec) else compile_filter(spec) for spec in given]
    return lambda passage: all(allows(passage) for allows in predicates)


def search(
    model: SelfRetrievalModel, query: str, k: int, spec: Filter, threshold: float | None
) -> list[RetrievalResult]:
    """``model.retrieve`` with the filter enforced in decoding and an optional score cut-off."""
    results = model.retrieve(query, k=k, filter=spec)
    if threshold is not None:
        results = [r for r in results if r.score >= threshold]
    return results


async def asearch(
    model: SelfRetrievalModel, query: str, k: int, spec: Filter, threshold: float | None
) -> list[RetrievalResult]:
    """``search`` for async callers, batched with concurrent ones (``model.aretrieve``)."""
    results = await model.aretrieve(query, k=k, filter=spec)
    if threshold is not None:
        results = [r for r in results if r.score >= threshold]
    return results


def passage_metadata(result: RetrievalResult) -> dict[str, Any]:
    """A result's metadata as both frameworks return it: the passage's, plus ``PASSAGE_KEYS``."""
    return {**result.metadata, **{key: getattr(result, key) for key in PASSAGE_KEYS}}


def split_title(metadata: Mapping[str, Any] | None, title_key: str) -> tuple[str, dict[str, Any]]:
    """``(title, other metadata)`` of a framework document whose title sits in its metadata."""
    rest = dict(metadata or {})
    title = rest.pop(title_key, None)
    return ("" if title is None else title), rest


def title_and_text(metadata: Mapping[str, Any], title_key: str, text: str) -> tuple[str, str]:
    """The ``(title, text)`` pair a reranker scores; a missing or empty title is ``""``."""
    return str(metadata.get(title_key) or ""), text


class FromDocumentsOptions(TypedDict, total=False):
    """How both adapters' ``from_documents`` build the model: the one list of these keywords.

    Each adapter's own ``from_documents`` options add its retriever's fields to these.
    """

    base_model: str | tuple[Any, Any]
    """Name, hub id or path of the base model, or a loaded ``(model, tokenizer)`` pair
    (default ``"smollm2-135m"``, the offline SmolLM2-135M-Instruct)."""
    train: bool
    """Train the documents in (default True); False indexes them zero-shot."""
    out: str | Path | None
    """Keep the artifact here (default: a temporary folder, removed; the model lives in memory)."""
    training_config: Any
    """A ``selfretrieval_trainer.train.TrainingConfig`` (default: its defaults)."""
    retrieval_config: RetrievalConfig | None
    """How queries are answered (default: ``RetrievalConfig()``)."""
    chunking: ChunkingConfig | None
    """How long documents are cut into passages (default: ``ChunkingConfig()``)."""
    title_key: str
    """Metadata key of a document's title (default ``"title"``)."""
    queries: Mapping[str, str] | None
    """Training questions by id, with ``qrels``, for supervised training."""
    qrels: Mapping[str, Mapping[str, int]] | None
    """Relevant document ids per training question."""
    device: str | None
    """``cpu``, ``cuda``, ``cuda:1`` ... (default: the best available)."""
    show_progress: bool
    """Progress bars while training (default False)."""


def model_from_documents(
    documents: object, to_corpus: Callable[..., Corpus], options: Mapping[str, Any]
) -> tuple[SelfRetrievalModel, dict[str, Any]]:
    """The model both adapters' ``from_documents`` build, and the keywords left for the retriever.

    ``to_corpus(documents, title_key=..., chunking=...)`` is the framework's conversion;
    ``options`` are ``FromDocumentsOptions`` plus the retriever's own fields, which are returned.
    A ``(model, tokenizer)`` pair is trained in place.
    """
    retriever_options = {k: v for k, v in options.items() if k not in _BUILD_KEYS}
    get = options.get
    base_model = get("base_model", "smollm2-135m")
    out, retrieval_config, device = get("out"), get("retrieval_config"), get("device")
    queries, qrels, training_config = get("queries"), get("qrels"), get("training_config")
    corpus = to_corpus(documents, title_key=get("title_key", "title"), chunking=get("chunking"))
    if not get("train", True):
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
        return model, retriever_options
    run_training = load_trainer().train
    with contextlib.ExitStack() as stack:
        if out is None:  # a temporary folder, removed once the trained model is in memory
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="selfretrieval-"))
            out = Path(folder) / "artifact"
        model = run_training(
            base_model,
            corpus,
            out,
            queries=queries,
            qrels=qrels,
            config=training_config,
            retrieval_config=retrieval_config,
            device=device,
            show_progress=get("show_progress", False),
        )
    return model, retriever_options


_BUILD_KEYS = frozenset(FromDocumentsOptions.__annotations__)


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
