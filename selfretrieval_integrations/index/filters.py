"""Filters: which passages a query may retrieve, enforced inside decoding.

A filter becomes a boolean mask over passage indices; the decoder turns it into allowed-leaf
counts of the trie, so disallowed passages can never be generated (not merely dropped afterwards).

Accepted forms:

* ``None``: everything;
* a mapping of field to condition, all of which must hold. Fields are ``passage_id``, ``doc_id``,
  ``title`` or a metadata key. A condition is a value (equality), a list/tuple/set (membership),
  or a mapping of operators: ``$eq $ne $in $nin $gt $gte $lt $lte``. ``{"$and": [...]}`` and
  ``{"$or": [...]}`` combine sub-filters;
* a callable ``Passage -> bool``;
* a boolean numpy array over passage indices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from selfretrieval_integrations.corpus import Passage
from selfretrieval_integrations.errors import QueryError

Filter = Mapping[str, Any] | Callable[[Passage], bool] | np.ndarray | None

#: What ``passage_field`` returns for a metadata key the passage lacks (unlike ``None``, a value).
MISSING = object()
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda v, c: v == c,
    "$ne": lambda v, c: v != c,
    "$in": lambda v, c: v in c,
    "$nin": lambda v, c: v not in c,
    "$gt": lambda v, c: v is not MISSING and v > c,
    "$gte": lambda v, c: v is not MISSING and v >= c,
    "$lt": lambda v, c: v is not MISSING and v < c,
    "$lte": lambda v, c: v is not MISSING and v <= c,
}


def passage_field(passage: Passage, name: str, default: Any = MISSING) -> Any:
    """The value a filter on ``name`` tests: the passage's own fields first, then its metadata."""
    if name == "passage_id":
        return passage.id
    if name == "doc_id":
        return passage.doc_id
    if name == "title":
        return passage.title
    return passage.metadata.get(name, default)


def _condition(value: Any, condition: Any) -> bool:
    if isinstance(condition, Mapping):
        for op, operand in condition.items():
            test = _OPERATORS.get(op)
            if test is None:
                raise QueryError(
                    f"unknown filter operator {op!r}; allowed: {', '.join(sorted(_OPERATORS))}"
                )
            try:
                if not test(value, operand):
                    return False
            except TypeError:
                return False
        return True
    if isinstance(condition, (list, tuple, set, frozenset)):
        return value in condition
    return bool(value == condition)


def compile_filter(spec: Mapping[str, Any]) -> Callable[[Passage], bool]:
    """A predicate for a mapping filter (validated once, before any passage is read)."""
    if not isinstance(spec, Mapping):
        raise QueryError(f"filter must be a mapping, got {type(spec).__name__}")
    parts: list[Callable[[Passage], bool]] = []
    for key, condition in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, (list, tuple)) or not condition:
                raise QueryError(f"{key} needs a non-empty list of filters, got {condition!r}")
            subs = [compile_filter(sub) for sub in condition]
            if key == "$and":
                parts.append(lambda p, subs=subs: all(s(p) for s in subs))
            else:
                parts.append(lambda p, subs=subs: any(s(p) for s in subs))
            continue
        if key.startswith("$"):
            raise QueryError(f"unknown filter combinator {key!r}; allowed: $and, $or")
        if isinstance(condition, Mapping):
            for op in condition:
                if op not in _OPERATORS:
                    raise QueryError(
                        f"unknown filter operator {op!r} for {key!r}; allowed: "
                        f"{', '.join(sorted(_OPERATORS))}"
                    )
        parts.append(lambda p, key=key, c=condition: _condition(passage_field(p, key), c))
    return lambda p: all(part(p) for part in parts)


def filter_mask(passages: Any, spec: Filter) -> np.ndarray | None:
    """Boolean mask over ``passages`` (a PassageStore or sequence), or None for no filter."""
    if spec is None:
        return None
    n = len(passages)
    if isinstance(spec, np.ndarray):
        if spec.dtype != bool or spec.shape != (n,):
            raise QueryError(
                f"a mask filter must be a boolean array of shape ({n},), got {spec.dtype} "
                f"{spec.shape}"
            )
        return spec
    predicate = spec if callable(spec) else compile_filter(spec)
    return np.fromiter((bool(predicate(p)) for p in passages), dtype=bool, count=n)
