"""LlamaIndex retriever and reranker over one ``SelfRetrievalModel``.

Thin adapters: the model retrieves (filters enforced inside its constrained decoding) and reranks
(``selfretrieval_integrations.reranking.rerank``); this module converts nodes, ``MetadataFilters``
and results. Async retrieval runs off the event loop, decoded in one batch with concurrent calls
(``SelfRetrievalModel.aretrieve``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfretrieval_integrations.corpus import ChunkingConfig, Corpus, Passage, chunk_document
from selfretrieval_integrations.corpus import Document as CorpusDocument
from selfretrieval_integrations.errors import ArtifactError, QueryError
from selfretrieval_integrations.extras import missing_extra
from selfretrieval_integrations.framework_shared import (
    PASSAGE_KEYS,
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
from selfretrieval_integrations.index import Filter, compile_filter, passage_field
from selfretrieval_integrations.retrieval import (
    RerankConfig,
    RetrievalResult,
    SelfRetrievalModel,
    rerank,
)
from selfretrieval_integrations.validation import checked_int

if TYPE_CHECKING:
    from typing_extensions import Unpack

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_validator
    from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import (
        BaseNode,
        MetadataMode,
        NodeRelationship,
        NodeWithScore,
        QueryBundle,
        RelatedNodeInfo,
        TextNode,
    )
    from llama_index.core.schema import Document as LlamaDocument
    from llama_index.core.vector_stores.types import (
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
    )
except ImportError as _error:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra(
        "llama-index-core", "llamaindex", "the LlamaIndex adapter", _error
    ) from _error

__all__ = ["SelfReranker", "SelfRetriever", "metadata_filters_to_filter", "nodes_to_corpus"]

dispatcher = get_dispatcher(__name__)

#: File written next to the artifact by ``SelfRetriever.persist``.
SETTINGS_FILE = "llama_index_retriever.json"

_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}


# -- filters ---------------------------------------------------------------------------------------


def _contains(container: Any, value: Any) -> bool:
    try:
        return value in container
    except TypeError:
        return False


def _text_match(value: Any, actual: Any, *, fold: bool) -> bool:
    if not isinstance(value, str) or not isinstance(actual, str):
        return False
    return value.lower() in actual.lower() if fold else value in actual


def _leaf(spec: MetadataFilter) -> Callable[[Passage], bool]:
    operator = FilterOperator(spec.operator)
    if operator in _OPERATORS:
        return compile_filter({spec.key: {_OPERATORS[operator]: spec.value}})
    key, value = spec.key, spec.value

    def actual(p: Passage) -> Any:
        return passage_field(p, key, None)

    if operator is FilterOperator.IS_EMPTY:
        return lambda p: actual(p) in (None, "", [])
    if operator is FilterOperator.CONTAINS:
        return lambda p: actual(p) is not None and _contains(actual(p), value)
    if operator in (FilterOperator.ANY, FilterOperator.ALL):
        if not isinstance(value, list):
            raise QueryError(
                f"the {operator.value!r} filter on {key!r} needs a list, got {value!r}"
            )
        combine = any if operator is FilterOperator.ANY else all
        return lambda p: actual(p) is not None and combine(_contains(actual(p), v) for v in value)
    if operator in (FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE):
        fold = operator is FilterOperator.TEXT_MATCH_INSENSITIVE
        return lambda p: _text_match(value, actual(p), fold=fold)
    raise QueryError(
        f"unsupported filter operator {operator.value!r} on {key!r}"
    )  # pragma: no cover


def metadata_filters_to_filter(filters: MetadataFilters) -> Callable[[Passage], bool]:
    """A passage predicate with the semantics of LlamaIndex's own ``MetadataFilters``.

    Keys are node metadata keys; ``passage_id``, ``doc_id`` and ``title`` are the passage's own
    fields (as in the nodes this retriever returns). ``and``/``or``/``not`` and nested filters are
    supported; a missing key only matches ``!=``, ``nin`` and ``is_empty``.
    """
    if not isinstance(filters, MetadataFilters):
        raise QueryError(f"expected MetadataFilters, got {type(filters).__name__}")
    if not filters.filters:
        raise QueryError("MetadataFilters(filters=[]) is empty: pass filters=None for no filter")
    parts = [
        metadata_filters_to_filter(f) if isinstance(f, MetadataFilters) else _leaf(f)
        for f in filters.filters
    ]
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if condition is FilterCondition.AND:
        return lambda p: all(part(p) for part in parts)
    if condition is FilterCondition.OR:
        return lambda p: any(part(p) for part in parts)
    return lambda p: not any(part(p) for part in parts)


def _as_filter(filters: object) -> Filter:
    if isinstance(filters, MetadataFilters):
        return metadata_filters_to_filter(filters)
    return checked_filter(filters)  # type: ignore[no-any-return]


# -- documents and nodes ---------------------------------------------------------------------------


def nodes_to_corpus(
    nodes: Sequence[BaseNode],
    *,
    title_key: str = "title",
    chunking: ChunkingConfig | None = None,
) -> Corpus:
    """A corpus of LlamaIndex documents (chunked) and nodes (kept whole, one passage each).

    A ``Document`` keeps its ``doc_id``; a node keeps its ``node_id`` as passage id and its source
    document (``ref_doc_id``) as document id. The title is ``metadata[title_key]``.
    """
    items = check_items(nodes, BaseNode, "LlamaIndex documents or nodes")
    passages: list[Passage] = []
    for node in items:
        title, metadata = split_title(node.metadata, title_key)
        text = node.get_content(metadata_mode=MetadataMode.NONE)
        if isinstance(node, LlamaDocument):
            doc = CorpusDocument(id=node.doc_id, text=text, title=title, metadata=metadata)
            passages.extend(chunk_document(doc, chunking))
        else:
            passages.append(
                Passage(
                    id=node.node_id,
                    doc_id=node.ref_doc_id or node.node_id,
                    title=title,
                    text=text,
                    metadata=metadata,
                )
            )
    return Corpus(passages)


def _node(result: RetrievalResult) -> NodeWithScore:
    hidden = [key for key in PASSAGE_KEYS if key != "title"]
    node = TextNode(
        id_=result.passage_id,
        text=result.text,
        metadata=passage_metadata(result),
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=result.doc_id)},
        excluded_embed_metadata_keys=hidden,
        excluded_llm_metadata_keys=hidden,
    )
    return NodeWithScore(node=node, score=result.score)


# -- retriever -------------------------------------------------------------------------------------


class _FromDocuments(FromDocumentsOptions, total=False):
    similarity_top_k: int
    filters: MetadataFilters | Filter
    score_threshold: float | None
    callback_manager: CallbackManager | None
    verbose: bool


class SelfRetriever(BaseRetriever):
    """Self-Retrieval as a LlamaIndex retriever: passages are generated under a trie constraint.

    Returns ``NodeWithScore`` whose ``TextNode`` id is the passage id, with ``passage_id``,
    ``doc_id`` and ``title`` in the metadata and the source document as ``ref_doc_id``.
    ``filters`` (LlamaIndex ``MetadataFilters`` or this library's filter forms) restrict which
    passages can be generated at all.

    ```python
    retriever = SelfRetriever.from_persist_dir("selfretrieval-quickstart", similarity_top_k=3)
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm)
    ```
    """

    def __init__(
        self,
        model: SelfRetrievalModel,
        *,
        similarity_top_k: int = 4,
        filters: MetadataFilters | Filter = None,
        score_threshold: float | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        self.model = checked_model(model)
        self.similarity_top_k = checked_int(similarity_top_k, "similarity_top_k", error=QueryError)
        self.filters = filters
        self._filter = _as_filter(filters)
        self.score_threshold = checked_threshold(score_threshold)
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_documents(
        cls, documents: Sequence[BaseNode], **options: Unpack[_FromDocuments]
    ) -> SelfRetriever:
        """Train LlamaIndex documents or nodes into a model (by default) and return a retriever.

        ``framework_shared.FromDocumentsOptions`` (``base_model``, ``train``, ``out``,
        ``training_config``, ``title_key``, ...) say how; the rest go to the constructor
        (``similarity_top_k``, ``filters``, ...).
        """
        model, fields = model_from_documents(documents, nodes_to_corpus, options)
        return cls(model, **fields)

    def persist(self, persist_dir: str | Path) -> Path:
        """Save the model as an artifact plus this retriever's settings (``from_persist_dir``)."""
        filters: dict[str, Any] | None
        if self.filters is None:
            filters = None
        elif isinstance(self.filters, MetadataFilters):
            filters = {"metadata_filters": self.filters.model_dump(mode="json")}
        elif isinstance(self.filters, Mapping):
            filters = {"mapping": dict(self.filters)}
        else:
            raise QueryError(
                f"cannot persist a {type(self.filters).__name__} filter; use MetadataFilters or a "
                "mapping filter, or pass the filter again to from_persist_dir(..., filters=...)"
            )
        settings = {
            "similarity_top_k": self.similarity_top_k,
            "score_threshold": self.score_threshold,
            "filters": filters,
        }
        try:
            text = json.dumps(settings, indent=2, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise QueryError(f"the retriever's filter is not JSON-serialisable: {error}") from error
        path = self.model.save_pretrained(persist_dir)
        (path / SETTINGS_FILE).write_text(text + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_persist_dir(
        cls,
        persist_dir: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        **kwargs: Any,
    ) -> SelfRetriever:
        """Load what ``persist`` wrote (or any artifact folder); ``kwargs`` override settings."""
        folder = Path(persist_dir)
        settings_path = folder / SETTINGS_FILE
        settings = _read_settings(settings_path) if settings_path.is_file() else {}
        settings.update(kwargs)
        model = SelfRetrievalModel.from_pretrained(folder, device=device, dtype=dtype)
        return cls(model, **settings)

    # -- retrieval ----------------------------------------------------------------------------

    # -- keeping the index current ------------------------------------------------------------

    def insert(self, documents: Sequence[LlamaDocument], **options: Any) -> int:
        """Train LlamaIndex documents into the model's artifact (the ``train`` extra).

        They are found from the next call on. ``options`` go to the trainer's ``add_documents``
        (``config``, ``replay_ratio``, ``chunking``, ...). Returns the number of passages added.
        """
        items = check_items(documents, LlamaDocument, "LlamaIndex Document objects")
        title_key = options.pop("title_key", "title")
        converted = []
        for doc in items:
            title, metadata = split_title(doc.metadata, title_key)
            text = doc.get_content(metadata_mode=MetadataMode.NONE)
            converted.append(
                CorpusDocument(id=doc.doc_id, text=text, title=title, metadata=metadata)
            )
        return self.model.add_documents(converted, **options)

    def delete_ref_doc(self, ref_doc_id: str, **options: Any) -> int:
        """Delete a source document and all its passages (LlamaIndex's name for it); no
        training, and no later call can return them. Returns the number of passages removed."""
        return self.model.delete_documents([ref_doc_id], **options)

    def delete_nodes(self, node_ids: Sequence[str], **options: Any) -> int:
        """Delete single passages by node id. Returns the number of passages removed."""
        return self.model.delete_documents(list(node_ids), **options)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        allowed = combined_filter(self.model, self._filter)
        results = search(
            self.model, query_bundle.query_str, self.similarity_top_k, allowed, self.score_threshold
        )
        return [_node(r) for r in results]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Off the event loop, and decoded in one batch with the calls that wait beside it.
        allowed = combined_filter(self.model, self._filter)
        results = await asearch(
            self.model, query_bundle.query_str, self.similarity_top_k, allowed, self.score_threshold
        )
        return [_node(r) for r in results]


def _read_settings(path: Path) -> dict[str, Any]:
    """The retriever settings ``persist`` wrote, validated (a clear error if damaged)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        known = {"similarity_top_k", "score_threshold", "filters"}
        if not isinstance(saved, dict) or set(saved) - known:
            raise ValueError(f"expected an object with the keys {sorted(known)}")
        stored = saved.get("filters")
        filters: Any = None
        if stored is not None and "metadata_filters" in stored:
            filters = MetadataFilters.model_validate(stored["metadata_filters"])
        elif stored is not None:
            filters = stored["mapping"]
        _as_filter(filters)
        return {
            "similarity_top_k": checked_int(
                saved.get("similarity_top_k", 4), "similarity_top_k", error=QueryError
            ),
            "score_threshold": checked_threshold(saved.get("score_threshold")),
            "filters": filters,
        }
    except (ValueError, KeyError, TypeError) as error:
        raise ArtifactError(f"{path} is not a valid settings file: {error}") from error


# -- reranker --------------------------------------------------------------------------------------


class SelfReranker(BaseNodePostprocessor):
    """Reorders any retriever's nodes by the model's self-assessment of their relevance.

    Returns new ``NodeWithScore`` objects (same nodes, new scores) for the best ``top_n``; emits
    LlamaIndex's ``ReRankStartEvent`` / ``ReRankEndEvent`` and a ``RERANKING`` callback event.
    The input order and the nodes' scores are the first stage (see ``RerankConfig``).
    """

    top_n: int | None = Field(default=3, description="Nodes to keep (None keeps all).")
    config: RerankConfig = Field(
        default_factory=RerankConfig, description="How assessment and first-stage order combine."
    )
    title_key: str = Field(default="title", description="Metadata key of a node's title.")
    _model: SelfRetrievalModel = PrivateAttr()

    def __init__(
        self,
        model: SelfRetrievalModel,
        *,
        top_n: int | None = 3,
        config: RerankConfig | None = None,
        title_key: str = "title",
        callback_manager: CallbackManager | None = None,
    ) -> None:
        super().__init__(  # type: ignore[call-arg]  # pydantic fields, no mypy plugin
            top_n=top_n,
            config=config or RerankConfig(),
            title_key=title_key,
            callback_manager=callback_manager or CallbackManager(),
        )
        self._model = checked_model(model)

    @field_validator("top_n", mode="before")
    @classmethod
    def _check_top_n(cls, value: object) -> int | None:
        return checked_top_n(value)

    @property
    def model(self) -> SelfRetrievalModel:
        return self._model

    @classmethod
    def class_name(cls) -> str:
        return "SelfReranker"

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise QueryError(
                "SelfReranker needs the query to rerank against: call "
                "postprocess_nodes(nodes, query_str=...) or pass query_bundle=QueryBundle(...)"
            )
        if not nodes:
            return []
        model_name = self._model.base_model or "self-retrieval"
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=nodes,
                top_n=self.top_n or len(nodes),
                model_name=model_name,
            )
        )
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: model_name,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            pairs = [
                title_and_text(
                    n.node.metadata,
                    self.title_key,
                    n.node.get_content(metadata_mode=MetadataMode.NONE),
                )
                for n in nodes
            ]
            # LlamaIndex scores are "higher is better"; a node without one makes the first
            # stage's order stand in for all of them.
            ranked = rerank(
                self._model,
                query_bundle.query_str,
                pairs,
                scores=[n.score for n in nodes],
                top_n=self.top_n,
                config=self.config,
            )
            reranked = [NodeWithScore(node=nodes[r.index].node, score=r.score) for r in ranked]
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked
