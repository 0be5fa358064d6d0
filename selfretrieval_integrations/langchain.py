"""LangChain retriever and reranker over one ``SelfRetrievalModel``.

Thin adapters: the model retrieves (filters enforced inside its constrained decoding) and reranks
(``selfretrieval_integrations.reranking.rerank``); this module only converts to and from
LangChain's ``Document``. The async methods run the model in a worker thread so they never block
the event loop, and concurrent async retrievals are decoded together in one batch
(``SelfRetrievalModel.aretrieve``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfretrieval_integrations.corpus import ChunkingConfig, Corpus
from selfretrieval_integrations.corpus import Document as CorpusDocument
from selfretrieval_integrations.errors import QueryError
from selfretrieval_integrations.extras import missing_extra
from selfretrieval_integrations.framework_shared import (
    FromDocumentsOptions,
    asearch,
    check_items,
    checked_filter,
    checked_model,
    checked_threshold,
    checked_top_n,
    combined_filter,
    model_from_documents,
    passage_metadata,
    search,
    split_title,
    title_and_text,
)
from selfretrieval_integrations.retrieval import RerankConfig, SelfRetrievalModel, rerank
from selfretrieval_integrations.validation import checked_int

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from selfretrieval_integrations.index import Filter
    from selfretrieval_integrations.retrieval import RetrievalResult

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
        Callbacks,
    )
    from langchain_core.documents import BaseDocumentCompressor, Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict, Field, field_validator
except ImportError as _error:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("langchain-core", "langchain", "the LangChain adapter", _error) from _error

__all__ = ["SelfReranker", "SelfRetriever", "documents_to_corpus"]

_CALL_OPTIONS = ("k", "filter", "score_threshold")


def documents_to_corpus(
    documents: Sequence[Document],
    *,
    title_key: str = "title",
    chunking: ChunkingConfig | None = None,
) -> Corpus:
    """A corpus of LangChain documents, chunked into passages.

    The document id is ``Document.id``, or ``doc-<position>`` when it is unset; the title is
    ``metadata[title_key]`` and the rest of the metadata is kept (it must be JSON values).
    """
    return Corpus.from_documents(_corpus_documents(documents, title_key), chunking)


def _corpus_documents(documents: Sequence[Document], title_key: str) -> list[CorpusDocument]:
    docs = check_items(documents, Document, "LangChain Document objects")
    converted = []
    for position, doc in enumerate(docs):
        title, metadata = split_title(doc.metadata, title_key)
        converted.append(
            CorpusDocument(
                id=doc.id if doc.id else f"doc-{position}",
                text=doc.page_content,
                title=title,
                metadata=metadata,
            )
        )
    return converted


class _FromDocuments(FromDocumentsOptions, total=False):
    k: int
    filter: Filter
    score_threshold: float | None


class SelfRetriever(BaseRetriever):
    """Self-Retrieval as a LangChain retriever: passages are generated, never looked up.

    The model writes the title and text of each passage under a trie constraint, so results are
    verbatim corpus passages; ``filter`` restricts which passages can be generated at all.

    Setup:
        Install the extra, then train a model on your documents or load a trained artifact.

        ```bash
        pip install "selfretrieval-integrations[langchain]"
        ```

    Key init args:
        model: SelfRetrievalModel
            The loaded model; one model can serve many retrievers and rerankers.
        k: int
            Number of documents to return (default 4).
        filter: dict | callable | None
            Which passages may be returned, e.g. ``{"doc_id": {"$in": ["a", "b"]}}`` (fields are
            ``passage_id``, ``doc_id``, ``title`` or metadata keys). Enforced during decoding.
        score_threshold: float | None
            Drop results whose score is below this value.

    Instantiate:
        ```python
        from selfretrieval_integrations.langchain import SelfRetriever

        retriever = SelfRetriever.from_pretrained("selfretrieval-quickstart", k=3)
        # or train on LangChain documents:
        retriever = SelfRetriever.from_documents(docs, base_model="smollm2-135m", out="my-index")
        ```

    Usage:
        ```python
        docs = retriever.invoke("Who founded the Mongol Empire?")
        docs = retriever.invoke("...", k=1, filter={"title": "Genghis Khan"})  # per call
        docs[0].id, docs[0].metadata["doc_id"], docs[0].metadata["score"]
        ```

    Use within a chain:
        ```python
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate
        from langchain_core.runnables import RunnablePassthrough

        prompt = ChatPromptTemplate.from_template(
            "Answer from the context.\\n\\n{context}\\n\\nQuestion: {question}"
        )

        def format_docs(docs):
            return "\\n\\n".join(doc.page_content for doc in docs)

        chain = (
            {"context": retriever | format_docs, "question": RunnablePassthrough()}
            | prompt
            | llm
            | StrOutputParser()
        )
        chain.invoke("Who founded the Mongol Empire?")
        ```

    A per-call ``filter`` narrows the retriever's own ``filter`` (both apply), so a filter set
    here for access control cannot be widened by a caller. ``Document.metadata`` holds the
    passage's metadata plus ``passage_id``, ``doc_id``, ``title``, ``score``, ``rank`` and
    ``relevance`` (these names win over metadata keys of the same name).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, validate_assignment=True)

    model: SelfRetrievalModel = Field(exclude=True)
    """The loaded Self-Retrieval model (shared, never copied)."""
    k: int = 4
    """Number of documents to return."""
    filter: Any = None
    """Mapping filter, callable ``Passage -> bool``, boolean mask, or None for every passage."""
    score_threshold: float | None = None
    """Minimum score of a returned document (None keeps all ``k``)."""

    @field_validator("model", mode="before")
    @classmethod
    def _check_model(cls, value: object) -> SelfRetrievalModel:
        return checked_model(value)

    @field_validator("k", mode="before")
    @classmethod
    def _check_k(cls, value: object) -> int:
        return checked_int(value, "k", error=QueryError)

    @field_validator("filter", mode="before")
    @classmethod
    def _check_filter(cls, value: object) -> Any:
        return checked_filter(value)

    @field_validator("score_threshold", mode="before")
    @classmethod
    def _check_threshold(cls, value: object) -> float | None:
        return checked_threshold(value)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        **kwargs: Any,
    ) -> SelfRetriever:
        """A retriever over a saved artifact; ``kwargs`` are the retriever's fields (k, filter)."""
        return cls(
            model=SelfRetrievalModel.from_pretrained(path, device=device, dtype=dtype), **kwargs
        )

    @classmethod
    def from_documents(
        cls, documents: Sequence[Document], **options: Unpack[_FromDocuments]
    ) -> SelfRetriever:
        """Train ``documents`` into a model (by default) and return a retriever over it.

        ``framework_shared.FromDocumentsOptions`` (``base_model``, ``train``, ``out``,
        ``training_config``, ``title_key``, ...) say how; ``k``, ``filter`` and
        ``score_threshold`` set the retriever's fields.
        """
        model, fields = model_from_documents(documents, documents_to_corpus, options)
        return cls(model=model, **fields)

    # -- keeping the index current ------------------------------------------------------------

    def add_documents(
        self, documents: Sequence[Document], *, title_key: str = "title", **options: Any
    ) -> int:
        """Train LangChain documents into the model's artifact (the ``train`` extra).

        They are found from the next call on, by every retriever sharing the model. ``options``
        go to the trainer's ``add_documents`` (``config``, ``replay_ratio``, ``chunking``, ...).
        Returns the number of passages added. Documents need an ``id`` to be deleted later.
        """
        return self.model.add_documents(_corpus_documents(documents, title_key), **options)

    def delete(self, ids: Sequence[str], **options: Any) -> int:
        """Delete documents (or passages) by id: no later call can return them, no training.

        Named like ``VectorStore.delete``. ``options``: ``lock_timeout``. Returns the number of
        passages removed.
        """
        return self.model.delete_documents(ids, **options)

    # -- retrieval ----------------------------------------------------------------------------

    def _call_options(self, options: Mapping[str, Any]) -> tuple[int, Filter, float | None]:
        """``(k, filter, score threshold)`` of one call, checked."""
        unknown = sorted(set(options) - {*_CALL_OPTIONS, "verbose"})
        if unknown:
            raise QueryError(
                f"unknown retriever argument(s) {unknown}; per-call options are "
                f"{', '.join(_CALL_OPTIONS)}"
            )
        # An option given as None means "the retriever's own value".
        k = options.get("k")
        k = self.k if k is None else checked_int(k, "k", error=QueryError)
        threshold = options.get("score_threshold")
        threshold = self.score_threshold if threshold is None else checked_threshold(threshold)
        allowed = combined_filter(self.model, self.filter, checked_filter(options.get("filter")))
        return k, allowed, threshold

    def _search(self, query: str, options: Mapping[str, Any]) -> list[Document]:
        return [_document(r) for r in search(self.model, query, *self._call_options(options))]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return self._search(query, kwargs)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        # Off the event loop, and decoded in one batch with the calls that wait beside it.
        results = await asearch(self.model, query, *self._call_options(kwargs))
        return [_document(r) for r in results]


def _document(result: RetrievalResult) -> Document:
    """A result as a LangChain document."""
    return Document(
        id=result.passage_id,
        page_content=result.text,
        metadata={
            **passage_metadata(result),
            "score": result.score,
            "rank": result.rank,
            "relevance": result.relevance,
        },
    )


class SelfReranker(BaseDocumentCompressor):
    """Reorders any retriever's documents by the model's self-assessment of their relevance.

    Returns copies of the best ``top_n`` documents with ``metadata["relevance_score"]`` (the
    score that ordered them) and ``metadata["self_assessment"]`` (the model's relevance in [0, 1));
    the input documents are not modified. The input order is the first stage (LangChain
    documents carry no common score): ``convex`` (the default) fuses its ranks with the model's
    generation score and relevance, ``rrf`` its ranks with the relevance ranks; ``assessment``
    ignores it.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, validate_assignment=True)

    model: SelfRetrievalModel = Field(exclude=True)
    """The loaded Self-Retrieval model (shared with retrievers, never copied)."""
    top_n: int | None = 3
    """Documents to keep (None keeps all, reordered)."""
    config: RerankConfig = Field(default_factory=RerankConfig)
    """How assessment and first-stage order are combined."""
    title_key: str = "title"
    """Metadata key holding a document's title (given to the model with the text)."""

    @field_validator("model", mode="before")
    @classmethod
    def _check_model(cls, value: object) -> SelfRetrievalModel:
        return checked_model(value)

    @field_validator("top_n", mode="before")
    @classmethod
    def _check_top_n(cls, value: object) -> int | None:
        return checked_top_n(value)

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """The ``top_n`` best documents for ``query``, best first, as annotated copies."""
        docs = list(documents)
        wrong = sorted({type(d).__name__ for d in docs if not isinstance(d, Document)})
        if wrong:
            raise TypeError(f"SelfReranker takes LangChain Document objects, got {wrong}")
        pairs = [title_and_text(d.metadata, self.title_key, d.page_content) for d in docs]
        ranked = rerank(self.model, query, pairs, top_n=self.top_n, config=self.config)
        return [
            docs[r.index].model_copy(
                update={
                    "metadata": {
                        **docs[r.index].metadata,
                        "relevance_score": r.score,
                        "self_assessment": r.relevance,
                    }
                }
            )
            for r in ranked
        ]

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """``compress_documents`` in a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)
