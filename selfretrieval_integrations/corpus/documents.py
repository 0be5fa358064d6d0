"""Documents and passages: the units a user gives and the units a model memorises.

Normalisation (the only changes made to what you give):

- Text and titles are stripped of leading and trailing whitespace.
- Titles are single-line, because the prompt puts a newline after the title: every line break in a
  title (with the spaces around it) becomes one space.
- The inner whitespace of a text is kept as it is, so passages are verbatim slices of their
  document, and Unicode is kept verbatim (no NFC or other normalisation).
- Metadata is stored as its JSON round trip (tuples become lists), so a corpus saved with
  ``to_jsonl`` and loaded back compares equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from selfretrieval_integrations.errors import CorpusError

_MAX_LISTED = 5


def _clean_id(value: object, what: str, context: str = "") -> str:
    """Return ``value`` as an id string; ints are converted because ids often come from counters."""
    where = f" ({context})" if context else ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CorpusError(
            f"{what} must be a non-empty string{where}, got {type(value).__name__} {value!r}; "
            f"give a string (ints are converted with str())."
        )
    text = str(value)
    if not text.strip():
        raise CorpusError(
            f"{what} must be a non-empty string{where}, got {text!r}; give every item a unique, "
            f"non-blank id."
        )
    return text


def _clean_title(value: object, owner: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CorpusError(
            f"the title of {owner} must be a string, got {type(value).__name__} {value!r}; "
            f"give a string or leave it out."
        )
    lines = [line.strip() for line in value.splitlines()]
    return " ".join(line for line in lines if line)


def _clean_text(value: object, owner: str) -> str:
    if not isinstance(value, str):
        raise CorpusError(
            f"the text of {owner} must be a string, got {type(value).__name__}; give its content "
            f"as str."
        )
    text = value.strip()
    if not text:
        raise CorpusError(
            f"the text of {owner} is empty or only whitespace ({value!r}); give it some text or "
            f"leave it out of the corpus."
        )
    return text


def _clean_metadata(value: object, owner: str) -> dict[str, Any]:
    """Return a JSON round trip of ``value``: checks it is serialisable and copies it deeply."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CorpusError(
            f"the metadata of {owner} must be a mapping (dict), got {type(value).__name__}; "
            f"give a dict of JSON values."
        )
    if not value:
        return {}
    bad_keys = [key for key in value if not isinstance(key, str)]
    if bad_keys:
        raise CorpusError(
            f"the metadata of {owner} has non-string keys {bad_keys[:_MAX_LISTED]!r}; JSON "
            f"objects only have string keys, so convert them with str()."
        )
    try:
        dumped = json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CorpusError(
            f"the metadata of {owner} is not JSON-serialisable ({exc}); keep only str, int, "
            f"float (not NaN or infinity), bool, None, lists and dicts with string keys."
        ) from exc
    loaded: dict[str, Any] = json.loads(dumped)
    return loaded


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(repr(item) for item in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _duplicates(ids: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    dups: list[str] = []
    dup_set: set[str] = set()
    for item in ids:
        if item in seen and item not in dup_set:
            dups.append(item)
            dup_set.add(item)
        seen.add(item)
    return dups


@dataclass(frozen=True)
class Document:
    """One source document as the user gives it; it is chunked into passages by ``Corpus``.

    The constructor validates and normalises (see the module docstring): ids may be ints, the text
    must not be blank, metadata must be JSON-serialisable.
    """

    id: str
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        doc_id = _clean_id(self.id, "a document id")
        owner = f"document {doc_id!r}"
        object.__setattr__(self, "id", doc_id)
        object.__setattr__(self, "text", _clean_text(self.text, owner))
        object.__setattr__(self, "title", _clean_title(self.title, owner))
        object.__setattr__(self, "metadata", _clean_metadata(self.metadata, owner))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, extra_to_metadata: bool = False) -> Document:
        """Build a document from ``{"id" or "_id", "text", "title"?, "metadata"?}``.

        Unknown keys are an error (likely a typo) unless ``extra_to_metadata`` is set, which moves
        them into the metadata (used by the file loaders, whose files come from elsewhere).
        """
        if not isinstance(data, Mapping):
            raise CorpusError(
                f"a document must be a Document or a mapping, got {type(data).__name__}; give "
                f'Document(id=..., text=...) or {{"id": ..., "text": ...}}.'
            )
        doc_id = _id_from_mapping(data, "document")
        if "text" not in data:
            raise CorpusError(
                f'document {doc_id!r} has no "text" key (keys: {sorted(map(str, data))}); give its '
                f'content under "text".'
            )
        allowed = {"id", "_id", "text", "title", "metadata"}
        extra = {key: value for key, value in data.items() if key not in allowed}
        metadata = data.get("metadata")
        if extra:
            if not extra_to_metadata:
                raise CorpusError(
                    f"document {doc_id!r} has unknown keys {sorted(map(str, extra))}; the allowed "
                    f'keys are {sorted(allowed)}. Put other fields under "metadata".'
                )
            if metadata is not None and not isinstance(metadata, Mapping):
                raise CorpusError(
                    f"the metadata of document {doc_id!r} must be a mapping (dict), got "
                    f"{type(metadata).__name__}; give a dict of JSON values."
                )
            merged = dict(extra)
            merged.update(metadata or {})
            metadata = merged
        return cls(
            id=doc_id,
            text=data["text"],
            title=data.get("title") or "",
            metadata=metadata if metadata is not None else {},
        )


def _id_from_mapping(data: Mapping[str, Any], what: str) -> str:
    has_id, has_underscore = "id" in data, "_id" in data
    if not has_id and not has_underscore:
        raise CorpusError(
            f'a {what} has no "id" (or "_id") key (keys: {sorted(map(str, data))}); give every '
            f"{what} a unique id."
        )
    if has_id and has_underscore and str(data["id"]) != str(data["_id"]):
        raise CorpusError(
            f'a {what} has both "id" ({data["id"]!r}) and "_id" ({data["_id"]!r}) and they differ; '
            f"keep only one of them."
        )
    return _clean_id(data["id"] if has_id else data["_id"], f"a {what} id")


@dataclass(frozen=True)
class Passage:
    """One retrievable unit: a chunk of a document, with the title the model generates before it.

    Chunks made by ``chunk_document`` have the id ``f"{doc_id}#{i}"`` (``i`` is the 0-based chunk
    index in the document); passages given directly keep their own id.
    """

    id: str
    doc_id: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        passage_id = _clean_id(self.id, "a passage id")
        owner = f"passage {passage_id!r}"
        object.__setattr__(self, "id", passage_id)
        object.__setattr__(self, "doc_id", _clean_id(self.doc_id, "a document id", owner))
        object.__setattr__(self, "text", _clean_text(self.text, owner))
        object.__setattr__(self, "title", _clean_title(self.title, owner))
        object.__setattr__(self, "metadata", _clean_metadata(self.metadata, owner))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Passage:
        """Build a passage from ``{"id", "text", "doc_id"?, "title"?, "metadata"?}``.

        ``doc_id`` defaults to the passage id (each passage is then its own document).
        """
        if not isinstance(data, Mapping):
            raise CorpusError(
                f"a passage must be a Passage or a mapping, got {type(data).__name__}; give "
                f'Passage(...) or {{"id": ..., "doc_id": ..., "text": ...}}.'
            )
        passage_id = _id_from_mapping(data, "passage")
        allowed = {"id", "_id", "doc_id", "text", "title", "metadata"}
        extra = sorted(str(key) for key in data if key not in allowed)
        if extra:
            raise CorpusError(
                f"passage {passage_id!r} has unknown keys {extra}; the allowed keys are "
                f'{sorted(allowed)}. Put other fields under "metadata".'
            )
        if "text" not in data:
            raise CorpusError(
                f'passage {passage_id!r} has no "text" key; give its content under "text".'
            )
        return cls(
            id=passage_id,
            doc_id=data.get("doc_id", passage_id),
            title=data.get("title") or "",
            text=data["text"],
            metadata=data.get("metadata"),  # type: ignore[arg-type]
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written by ``Corpus.to_jsonl`` (a fresh copy)."""
        return {
            "id": self.id,
            "doc_id": self.doc_id,
            "title": self.title,
            "text": self.text,
            "metadata": json.loads(json.dumps(self.metadata)) if self.metadata else {},
        }
