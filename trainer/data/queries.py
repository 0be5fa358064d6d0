"""Training queries, their qrels and answers, resolved to relevant passages of the corpus.

Supervised, answer and self-assessment examples all start from the same resolution, so they agree
on which passages are relevant and which answer a passage shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from selfretrieval_integrations.corpus import Corpus
from selfretrieval_integrations.errors import CorpusError

from .checks import listed


def answers_from_metadata(metadata: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Query id -> answers, from ``load_beir_query_metadata`` (its ``"answers"`` entries)."""
    answers: dict[str, list[str]] = {}
    for qid, meta in metadata.items():
        found = _clean_answers((meta or {}).get("answers"))
        if found:
            answers[qid] = found
    return answers


def _clean_answers(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable):
        raise CorpusError(f"answers must be a list of strings, got {type(value).__name__}")
    cleaned = []
    for answer in value:
        if not isinstance(answer, str):
            raise CorpusError(f"answers must be strings, got {type(answer).__name__} {answer!r}")
        if answer.strip():
            cleaned.append(answer.strip())
    return cleaned


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def contains_answer(text: str, normed_answers: Sequence[str]) -> bool:
    """Whether ``text`` holds one of the answers (normalised): such a passage is no negative."""
    if not normed_answers:
        return False
    normed = _norm(text)
    return any(answer in normed for answer in normed_answers)


def pick_answer(answers: Sequence[str], text: str) -> str:
    """The first answer found in ``text`` (extractive, grounded), else the first answer."""
    normed = _norm(text)
    for answer in answers:
        if _norm(answer) in normed:
            return answer
    return answers[0]


@dataclass(frozen=True)
class JudgedQuery:
    """A training query with its relevant passages (indices) and its known answers."""

    qid: str
    text: str
    positives: list[int]
    answers: list[str]

    @property
    def normed_answers(self) -> list[str]:
        return [_norm(a) for a in self.answers]


@dataclass(frozen=True)
class ResolvedQueries:
    """The queries that have relevant passages, and counts of what the qrels named."""

    queries: list[JudgedQuery]
    skipped_no_qrels: int
    qrels_documents: int = 0
    qrels_passages: int = 0


def resolve_queries(
    corpus: Corpus,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    answers: Mapping[str, Sequence[str] | str] | None,
) -> ResolvedQueries:
    """Map qrels (document or passage ids) to positive passage indices, query by query."""
    if not isinstance(queries, Mapping):
        raise CorpusError(f"queries must map query id -> text, got {type(queries).__name__}")
    if not isinstance(qrels, Mapping):
        raise CorpusError(
            f"qrels must map query id -> {{corpus id: relevance}}, got {type(qrels).__name__}"
        )
    if answers is not None and not isinstance(answers, Mapping):
        raise CorpusError(f"answers must map query id -> list of answers, got {type(answers)}")
    unknown_queries = [qid for qid in qrels if qid not in queries]
    if unknown_queries:
        raise CorpusError(
            f"qrels name {len(unknown_queries)} query ids that are not in queries: "
            f"{listed(unknown_queries)}; give the queries of every qrels entry (did you load "
            "another split's queries?)"
        )
    doc_ids = set(corpus.doc_ids())
    unknown_ids: list[str] = []
    for judged in qrels.values():
        if not isinstance(judged, Mapping):
            raise CorpusError(
                f"each qrels entry must map corpus id -> relevance, got {type(judged).__name__}"
            )
        for cid in judged:
            if cid not in corpus and cid not in doc_ids:
                unknown_ids.append(cid)
    if unknown_ids:
        unknown_ids = list(dict.fromkeys(unknown_ids))
        raise CorpusError(
            f"qrels name {len(unknown_ids)} corpus ids that are neither passage ids nor document "
            f"ids of this corpus: {listed(unknown_ids)}; qrels must refer to the corpus the model "
            "is trained on (corpus.doc_ids() and corpus.passage_ids list the valid ids)"
        )
    resolved: list[JudgedQuery] = []
    skipped = n_docs = n_passages = 0
    for qid, text in queries.items():
        judged = qrels.get(qid) or {}
        relevant = [cid for cid, rel in judged.items() if _relevance(rel, qid, cid) > 0]
        if not relevant:
            skipped += 1
            continue
        query_answers = _clean_answers(answers.get(qid)) if answers is not None else []
        normed = [_norm(a) for a in query_answers]
        positives: list[int] = []
        for cid in relevant:
            if cid in corpus:
                n_passages += 1
                positives.append(corpus.index_of(cid))
                continue
            n_docs += 1
            chunks = corpus.passages_of(cid)
            if len(chunks) > 1 and normed:
                with_answer = [p for p in chunks if contains_answer(corpus[p].text, normed)]
                chunks = with_answer or chunks
            positives.extend(chunks)
        resolved.append(JudgedQuery(qid, text, list(dict.fromkeys(positives)), query_answers))
    return ResolvedQueries(resolved, skipped, n_docs, n_passages)


def _relevance(value: object, qid: str, cid: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise CorpusError(
            f"qrels[{qid!r}][{cid!r}] must be a number (relevance), got {type(value).__name__}"
        )
    return float(value)
