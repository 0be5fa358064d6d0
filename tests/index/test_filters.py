"""Property: filters are enforced inside decoding, through both frameworks' retrievers.

Over random corpora (repeated texts and titles included), random LangChain filter dicts and random
LlamaIndex ``MetadataFilters``, no passage outside the allowed set is ever returned, and exactly
``min(k, allowed)`` passages come back: a filter applied after decoding would return fewer.
The allowed sets come from references independent of the code under test: a small evaluator of
the filter language written here, and LlamaIndex's own ``build_metadata_filter_fn``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn

from selfretrieval_integrations import Fusion, Passage, RetrievalConfig, SelfRetrievalModel
from selfretrieval_integrations import langchain as lc
from selfretrieval_integrations import llama_index as li
from selfretrieval_integrations.index.filters import MISSING as NO_VALUE
from selfretrieval_integrations.index.filters import passage_field

WORDS = ["alpha", "beta", "river", "stone", "light", "cloud", "north"]
COLORS = ["red", "green", "blue"]
TAGS = ["x", "y", "z"]
DOC_IDS = ["d0", "d1", "d2"]
GEN_ONLY = RetrievalConfig(fusion=Fusion.GENERATION)
MISSING = object()


@st.composite
def corpora(draw: st.DrawFn) -> list[Passage]:
    # At least 3 passages (k is at most 4): with more passages than k, a filter applied after
    # decoding instead of inside it would return too few.
    passages = []
    for i in range(draw(st.integers(3, 9))):
        metadata: dict[str, Any] = {"tags": draw(st.lists(st.sampled_from(TAGS), unique=True))}
        if draw(st.booleans()):
            metadata["color"] = draw(st.sampled_from(COLORS))
        if draw(st.booleans()):
            metadata["n"] = draw(st.integers(0, 4))
        passages.append(
            Passage(
                id=f"p{i}",
                doc_id=draw(st.sampled_from(DOC_IDS)),
                title=draw(st.sampled_from(["", "Alpha", "Beta"])),
                text=" ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))),
                metadata=metadata,
            )
        )
    return passages


queries = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)

# -- LangChain filter dicts, and a reference evaluator of their language -------------------------

FIELD_VALUES = {
    "color": st.sampled_from(COLORS),
    "n": st.integers(0, 4),
    "doc_id": st.sampled_from(DOC_IDS),
    "passage_id": st.sampled_from([f"p{i}" for i in range(9)]),
}
SCALAR_OPS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    field = draw(st.sampled_from(sorted(FIELD_VALUES)))
    values = FIELD_VALUES[field]
    form = draw(st.sampled_from(["value", "list", "ops"]))
    if form == "value":
        return {field: draw(values)}
    if form == "list":
        return {field: draw(st.lists(values, max_size=3))}
    ops = draw(st.lists(st.sampled_from([*SCALAR_OPS, "$in", "$nin"]), min_size=1, unique=True))
    return {
        field: {
            op: draw(st.lists(values, max_size=3)) if op in ("$in", "$nin") else draw(values)
            for op in ops
        }
    }


lc_filters = st.recursive(
    conditions(),
    lambda children: st.one_of(
        st.builds(lambda a, b: {**a, **b}, children, children),
        st.lists(children, min_size=1, max_size=3).map(lambda fs: {"$and": fs}),
        st.lists(children, min_size=1, max_size=3).map(lambda fs: {"$or": fs}),
    ),
    max_leaves=5,
)


def value_of(p: Passage, field: str) -> Any:
    own = {"passage_id": p.id, "doc_id": p.doc_id, "title": p.title}
    return own[field] if field in own else p.metadata.get(field, MISSING)


def allowed_by(spec: dict[str, Any] | None, p: Passage) -> bool:
    if spec is None:
        return True
    for key, cond in spec.items():
        if key == "$and" and not all(allowed_by(s, p) for s in cond):
            return False
        if key == "$or" and not any(allowed_by(s, p) for s in cond):
            return False
        if key.startswith("$"):
            continue
        v = value_of(p, key)
        if isinstance(cond, list):
            ok = v in cond
        elif isinstance(cond, dict):
            ok = all(holds(v, op, c) for op, c in cond.items())
        else:
            ok = v == cond
        if not ok:
            return False
    return True


def holds(v: Any, op: str, c: Any) -> bool:
    if op == "$eq":
        return v == c
    if op == "$ne":
        return v != c
    if op == "$in":
        return v in c
    if op == "$nin":
        return v not in c
    if v is MISSING:
        return False
    return {"$gt": v > c, "$gte": v >= c, "$lt": v < c, "$lte": v <= c}[op]


def check(ids: list[str], allowed: set[str], k: int) -> None:
    assert set(ids) <= allowed, f"returned {sorted(set(ids) - allowed)} outside {sorted(allowed)}"
    assert len(ids) == len(set(ids))
    assert len(ids) == min(k, len(allowed)), f"{len(ids)} results, {len(allowed)} allowed, k={k}"


@settings(max_examples=30, deadline=None)
@given(
    passages=corpora(),
    own=st.none() | lc_filters,
    per_call=st.none() | lc_filters,
    k=st.integers(1, 4),
    query=queries,
)
def test_langchain_filters_never_leak_and_keep_k(tiny_model, passages, own, per_call, k, query):
    model = SelfRetrievalModel.from_base(tiny_model, passages, config=GEN_ONLY)
    retriever = lc.SelfRetriever(model=model, k=k, filter=own)
    docs = retriever.invoke(query, filter=per_call)
    allowed = {p.id for p in passages if allowed_by(own, p) and allowed_by(per_call, p)}
    check([d.id for d in docs], allowed, k)


# -- LlamaIndex MetadataFilters, against LlamaIndex's own evaluation ---------------------------

LEAVES: dict[str, list[tuple[FilterOperator, st.SearchStrategy[Any]]]] = {
    "color": [
        *((op, st.sampled_from(COLORS)) for op in ("==", "!=", ">", "<=")),
        (FilterOperator.IN, st.lists(st.sampled_from(COLORS), min_size=1)),
        (FilterOperator.NIN, st.lists(st.sampled_from(COLORS), min_size=1)),
        (FilterOperator.TEXT_MATCH, st.sampled_from(["re", "e", "blu"])),
        (FilterOperator.TEXT_MATCH_INSENSITIVE, st.sampled_from(["RE", "Gr"])),
        (FilterOperator.IS_EMPTY, st.none()),
    ],
    "n": [
        *((op, st.integers(0, 4)) for op in ("==", "!=", ">", ">=", "<", "<=")),
        (FilterOperator.IN, st.lists(st.integers(0, 4), min_size=1)),
        (FilterOperator.IS_EMPTY, st.none()),
    ],
    "tags": [
        (FilterOperator.CONTAINS, st.sampled_from(TAGS)),
        (FilterOperator.ANY, st.lists(st.sampled_from(TAGS), min_size=1)),
        (FilterOperator.ALL, st.lists(st.sampled_from(TAGS), min_size=1)),
        (FilterOperator.IS_EMPTY, st.none()),
    ],
    "doc_id": [
        (FilterOperator.EQ, st.sampled_from(DOC_IDS)),
        (FilterOperator.NIN, st.lists(st.sampled_from(DOC_IDS), min_size=1)),
    ],
}


@st.composite
def metadata_filter(draw: st.DrawFn) -> MetadataFilter:
    key = draw(st.sampled_from(sorted(LEAVES)))
    operator, values = draw(st.sampled_from(LEAVES[key]))
    return MetadataFilter(key=key, value=draw(values), operator=FilterOperator(operator))


li_filters = st.builds(
    lambda fs, cond: MetadataFilters(filters=fs, condition=cond),
    st.lists(metadata_filter(), min_size=1, max_size=3),
    st.sampled_from(list(FilterCondition)),
)


@settings(max_examples=30, deadline=None)
@given(passages=corpora(), filters=li_filters, k=st.integers(1, 4), query=queries)
def test_llama_index_filters_never_leak_and_keep_k(tiny_model, passages, filters, k, query):
    model = SelfRetrievalModel.from_base(tiny_model, passages, config=GEN_ONLY)
    nodes = li.SelfRetriever(model, similarity_top_k=k, filters=filters).retrieve(query)
    # What LlamaIndex itself would allow, over the metadata our nodes carry.
    metadata = {p.id: {**p.metadata, "passage_id": p.id, "doc_id": p.doc_id} for p in passages}
    reference = build_metadata_filter_fn(lambda node_id: metadata[node_id], filters)
    allowed = {p.id for p in passages if reference(p.id)}
    check([n.node.node_id for n in nodes], allowed, k)


def test_a_field_is_the_passage_own_before_its_metadata():
    passage = Passage(
        id="p1", doc_id="d1", title="Own", text="x", metadata={"title": "meta", "lang": "en"}
    )
    fields = ["passage_id", "doc_id", "title", "lang"]
    assert [passage_field(passage, name) for name in fields] == ["p1", "d1", "Own", "en"]
    assert passage_field(passage, "absent") is NO_VALUE
    assert passage_field(passage, "absent", None) is None
