"""The mix: which examples make up a training set, how many of each, in what seeded order.

Everything is deterministic for a seed and uses only local random generators; per-passage and
per-query choices are seeded by the passage or query id, so adding documents does not change the
choices made for the others.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from selfretrieval_integrations.corpus import Corpus, cut_words
from selfretrieval_integrations.errors import CorpusError
from selfretrieval_integrations.index import PassageTrie
from selfretrieval_integrations.retrieval import IGNORE_INDEX, EncodedExample, Renderer
from selfretrieval_integrations.validation import checked_int

from .assessment import (
    DEFAULT_MAX_PASSAGE_WORDS,
    AssessmentCounts,
    NegativeSampling,
    checked_negative_sampling,
    encode_assessment,
)
from .checks import checked_passages
from .indexing import encode_indexing
from .queries import ResolvedQueries, resolve_queries
from .questions import encode_questions
from .supervised import encode_supervised
from .synthetic import synthetic_questions
from .targets import PassageTargets, unique_depths


@dataclass(frozen=True)
class MixConfig:
    """Which examples make up a training set, and how many of each."""

    indexing: bool = True
    """Train indexing examples (sentences of passages retrieve their passage)."""
    supervised_repeats: int = 2
    """Copies of each supervised and answer example (the paper repeats them twice); 0 drops
    them."""
    answer_repeats: int | None = None
    """Copies of each answer example when it should differ from ``supervised_repeats`` (None:
    the same). Answer examples carry a whole passage for a few target tokens, so they are most
    of the training tokens; one copy halves their cost."""
    assessment: bool = True
    """Train self-assessment examples (refusal after negatives, answer or affirmation after
    positives). Needs queries with qrels; positives with an answer example are not repeated."""
    questions: bool = True
    """Train query-likelihood examples (each training question after its relevant passage):
    the default self-assessment scores candidates by that likelihood."""
    n_negatives: int = 1
    """Negative passages per (query, relevant passage) pair."""
    negatives: NegativeSampling | str = NegativeSampling.SAME_DOC
    """Where negatives come from: ``"same_doc"``, ``"bm25"`` or ``"mixed"`` (NegativeSampling)."""
    indexing_per_passage: int | None = None
    """At most this many sentences per passage (a seeded sample); None keeps all of them."""
    synthetic_questions: int = 0
    """Rule-made questions per passage (``synthetic.py``, kept when BM25 finds their passage):
    each retrieves its passage, and a passage that no training question names also gets them as
    query-likelihood examples, so that trained and untrained passages are read alike."""
    indexing_fraction_with_queries: float = 1.0
    """Share of indexing examples kept (a seeded sample) when supervised examples exist; the
    paper's second stage mixes a sample of the indexing data with the supervised data."""
    extra_tokens: int = 8
    """Passage tokens trained after the title segment at least, even when fewer identify the
    passage (the target is cut at ``max(unique depth, title length + extra_tokens)``)."""
    seed: int = 0
    """Seed of every sampling choice and of the final shuffle."""
    min_words: int = 5
    """Shortest sentence (in words) used as an indexing query."""
    max_words: int = 50
    """Longest sentence (in words) used as an indexing query."""
    max_passage_words: int = DEFAULT_MAX_PASSAGE_WORDS
    """Passages of answer and assessment examples are cut to this many words (as at retrieval)."""
    supervised_full_target: bool = False
    """Train supervised examples on the whole passage instead of the identifying prefix."""

    def __post_init__(self) -> None:
        for name in ("indexing", "assessment", "questions", "supervised_full_target"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"MixConfig.{name} must be True or False, got {getattr(self, name)!r}"
                )
        counts = {
            "supervised_repeats": 0,
            "synthetic_questions": 0,
            "n_negatives": 0,
            "extra_tokens": 0,
            "min_words": 1,
            "max_words": 1,
            "max_passage_words": 1,
        }
        for name, minimum in counts.items():
            self._set(name, checked_int(getattr(self, name), f"MixConfig.{name}", minimum=minimum))
        if self.max_words < self.min_words:
            raise ValueError(
                f"MixConfig.max_words ({self.max_words}) must be >= min_words ({self.min_words})"
            )
        for name, minimum, none in (
            ("indexing_per_passage", 1, "all sentences"),
            ("answer_repeats", 0, "as supervised_repeats"),
        ):
            if getattr(self, name) is not None:
                label = f"MixConfig.{name} (None: {none})"
                self._set(name, checked_int(getattr(self, name), label, minimum=minimum))
        fraction = self.indexing_fraction_with_queries
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not 0.0 <= fraction <= 1.0
        ):
            raise ValueError(
                "MixConfig.indexing_fraction_with_queries must be a number in [0, 1], got "
                f"{fraction!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"MixConfig.seed must be an int, got {self.seed!r}")
        self._set("negatives", checked_negative_sampling(self.negatives))
        if not (self.indexing or self.supervised_repeats or self.assessment or self.questions):
            raise ValueError(
                "MixConfig turns every kind of example off; keep indexing=True, "
                "supervised_repeats >= 1, assessment=True or questions=True"
            )

    def _set(self, name: str, value: Any) -> None:
        """Store a normalised field value (the dataclass is frozen)."""
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["negatives"] = checked_negative_sampling(self.negatives).value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MixConfig:
        """Inverse of ``to_dict``; unknown keys (from newer versions) warn and are ignored."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            warnings.warn(
                f"MixConfig ignores unknown keys {unknown} (written by a newer version?)",
                stacklevel=2,
            )
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class TrainingSet:
    """Encoded, shuffled training examples and what they are made of."""

    examples: list[EncodedExample]
    stats: dict[str, Any]

    def __len__(self) -> int:
        return len(self.examples)


def _copy(example: EncodedExample, repeat: int) -> EncodedExample:
    return EncodedExample(
        input_ids=list(example.input_ids),
        labels=list(example.labels),
        metadata={**example.metadata, "repeat": repeat},
    )


def build_training_set(
    renderer: Renderer,
    corpus: Corpus,
    trie: PassageTrie,
    *,
    queries: Mapping[str, str] | None = None,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    answers: Mapping[str, Sequence[str]] | None = None,
    mix: MixConfig | None = None,
    passages: Sequence[int] | None = None,
) -> TrainingSet:
    """All training examples for ``corpus`` (with its ``trie``), mixed and shuffled with a seed.

    - indexing examples of every passage, or only of ``passages`` (indices; for incremental
      updates: the new passages plus a replay sample), thinned to
      ``mix.indexing_fraction_with_queries`` when supervised examples exist;
    - supervised and answer examples (``queries`` + ``qrels`` + optional ``answers``), each
      ``mix.supervised_repeats`` times;
    - self-assessment examples: ``mix.n_negatives`` negatives per relevant pair, and a positive
      for each pair that has no answer example already (an answer example is a positive);
    - query-likelihood examples: each relevant pair's question after its passage;
    - ``mix.synthetic_questions`` rule-made questions of each passage (of ``passages``), as
      retrieval examples, and as query-likelihood examples of passages no query names.

    Every retrieval target is checked against ``trie`` (it must identify its passage), so a trie
    built from another corpus, tokenizer or template is an error rather than silent garbage.
    ``stats`` holds counts per kind (``kinds``), tokens, target tokens and skipped queries.
    """
    mix = mix if mix is not None else MixConfig()
    if not isinstance(mix, MixConfig):
        raise ValueError(f"mix must be a MixConfig, got {type(mix).__name__}")
    if trie.n_passages != len(corpus):
        raise CorpusError(
            f"the trie holds {trie.n_passages} passages but the corpus has {len(corpus)}; build "
            "the trie from this corpus (selfretrieval_integrations.retrieval.build_trie)"
        )
    if qrels is not None and queries is None:
        raise CorpusError("qrels were given without queries; pass queries={query id: text} too")
    if queries is not None and qrels is None:
        raise CorpusError(
            "queries were given without qrels; pass qrels={query id: {corpus id: relevance}} "
            "(e.g. selfretrieval_integrations.corpus.load_beir_qrels(folder, 'train')) or leave "
            "queries out"
        )
    chosen = checked_passages(passages, corpus)
    targets = PassageTargets(renderer, corpus, unique_depths(trie), mix.extra_tokens, trie)
    resolved = (
        resolve_queries(corpus, queries, qrels, answers)
        if queries is not None and qrels is not None
        else ResolvedQueries([], 0)
    )

    supervised: list[EncodedExample] = []
    if mix.supervised_repeats and resolved.queries:
        supervised = encode_supervised(
            targets,
            resolved,
            full_target=mix.supervised_full_target,
            max_passage_words=mix.max_passage_words,
        )

    indexing: list[EncodedExample] = []
    indexing_before_sampling = 0
    if mix.indexing:
        indexing = encode_indexing(
            targets,
            chosen,
            seed=mix.seed,
            min_words=mix.min_words,
            max_words=mix.max_words,
            max_per_passage=mix.indexing_per_passage,
        )
        indexing_before_sampling = len(indexing)
        if supervised and mix.indexing_fraction_with_queries < 1.0:
            keep = round(mix.indexing_fraction_with_queries * len(indexing))
            rng = random.Random(f"{mix.seed}\x00indexing-fraction")
            kept = sorted(rng.sample(range(len(indexing)), keep))
            indexing = [indexing[i] for i in kept]

    assessment: list[EncodedExample] = []
    info = AssessmentCounts()
    if mix.assessment and resolved.queries:
        answered = {
            (e.metadata["query"], e.metadata["passage"])
            for e in supervised
            if e.metadata["kind"] == "answer" and mix.answer_repeats != 0
        }
        assessment, info = encode_assessment(
            renderer,
            corpus,
            resolved,
            seed=mix.seed,
            negatives=checked_negative_sampling(mix.negatives),
            n_negatives=mix.n_negatives,
            max_passage_words=mix.max_passage_words,
            skip_positive=lambda qid, p: (qid, p) in answered,
        )

    questions: list[EncodedExample] = []
    if mix.questions and resolved.queries:
        questions = encode_questions(
            renderer, corpus, resolved, max_passage_words=mix.max_passage_words
        )

    synthetic: list[EncodedExample] = []
    if mix.synthetic_questions:
        asked = {p for query in resolved.queries for p in query.positives}
        made = synthetic_questions(
            corpus,
            chosen,
            per_passage=mix.synthetic_questions,
            seed=mix.seed,
            min_words=mix.min_words,
            max_words=mix.max_words,
        )
        for p, texts in made.items():
            for text in texts:
                example = renderer.example(text, targets.target(p), prefix_length=targets.cut(p))
                example.metadata = {"kind": "synthetic", "passage": p}
                synthetic.append(example)
                if mix.questions and p not in asked:
                    passage = corpus[p]
                    body = cut_words(passage.text, mix.max_passage_words)
                    example = renderer.question_example(text, passage.title, body)
                    example.metadata = {"kind": "synthetic_question", "passage": p}
                    synthetic.append(example)

    examples = [*indexing, *questions, *synthetic]
    answer_repeats = mix.supervised_repeats if mix.answer_repeats is None else mix.answer_repeats
    for repeat in range(max(mix.supervised_repeats, answer_repeats)):
        for example in supervised:
            is_answer = example.metadata["kind"] == "answer"
            if repeat < (answer_repeats if is_answer else mix.supervised_repeats):
                examples.append(example if repeat == 0 else _copy(example, repeat))
    examples.extend(assessment)
    random.Random(f"{mix.seed}\x00shuffle").shuffle(examples)

    kinds: dict[str, int] = {}
    for example in examples:
        kind = example.metadata["kind"]
        if kind == "assessment":
            kind = f"assessment_{example.metadata['label']}"
        kinds[kind] = kinds.get(kind, 0) + 1
    lengths = [len(e.input_ids) for e in examples]
    target_tokens = sum(sum(1 for t in e.labels if t != IGNORE_INDEX) for e in examples)
    stats: dict[str, Any] = {
        "examples": len(examples),
        "kinds": kinds,
        "tokens": int(sum(lengths)),
        "target_tokens": int(target_tokens),
        "max_length": max(lengths, default=0),
        "mean_length": round(sum(lengths) / len(lengths), 2) if lengths else 0.0,
        "passages": len(corpus),
        "indexed_passages": len({e.metadata["passage"] for e in indexing}),
        "indexing_before_sampling": indexing_before_sampling,
        "queries": len(queries) if queries is not None else 0,
        "queries_used": len(resolved.queries),
        "queries_skipped_no_qrels": resolved.skipped_no_qrels,
        "relevant_pairs": sum(len(q.positives) for q in resolved.queries),
        "qrels_document_ids": resolved.qrels_documents,
        "qrels_passage_ids": resolved.qrels_passages,
        "negative_sources": dict(sorted(info.sources.items())),
        "negatives_missing": info.negatives_missing,
        "mix": mix.to_dict(),
    }
    return TrainingSet(examples=examples, stats=stats)


def replay_sample(
    corpus_size_or_indices: int | Sequence[int],
    n: int,
    *,
    seed: int,
    exclude: Iterable[int] = (),
) -> list[int]:
    """A seeded sample of ``n`` passage indices to replay during an incremental update.

    ``corpus_size_or_indices`` is the number of old passages (indices ``0 .. size-1``) or the
    candidate indices themselves; ``exclude`` removes some (e.g. passages of deleted documents).
    Returns fewer than ``n`` when fewer candidates exist, in ascending order.
    """
    n = checked_int(n, "n", minimum=0)
    candidates: Sequence[int]
    if isinstance(corpus_size_or_indices, Iterable):
        candidates = list(dict.fromkeys(int(i) for i in corpus_size_or_indices))
    else:
        candidates = range(checked_int(corpus_size_or_indices, "corpus size", minimum=0))
    excluded = {int(i) for i in exclude}
    pool = [i for i in candidates if i not in excluded] if excluded else candidates
    if n >= len(pool):
        return sorted(pool)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(pool), size=n, replace=False)
    return sorted(int(pool[int(i)]) for i in picked)
