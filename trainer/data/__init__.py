"""The training data of Self-Retrieval: indexing, supervised, answer and self-assessment examples.

These kinds of examples teach one model the whole retrieval job (see ``docs/how-it-works.md``);
each kind's metadata ``"kind"`` names it, and one module builds it:

``indexing`` (``indexing.py``)
    Internalizes the corpus: each sentence of a passage (``sentences.py``) retrieves the passage;
    the target is its trie key, cut where the trie identifies it (``targets.py``).
``supervised`` (``supervised.py``)
    A real training query (``queries.py``) with one relevant passage: the same cut target (or the
    whole passage).
``answer`` (``supervised.py``)
    The same query and passage followed by the answer after ``Final answer:``; the loss is on the
    answer only. Produced when answers are known.
``assessment`` (``assessment.py``)
    The refusal after a negative passage; the answer, or the affirmation, after a positive one.
``question`` (``questions.py``)
    A relevant passage, then its question: query likelihood, the default self-assessment.
``synthetic``, ``synthetic_question`` (``synthetic.py``)
    Rule-made questions of a passage's sentences: they retrieve their passage, and they are the
    query-likelihood examples of passages that no training question names.

``mixing.py`` puts them together: ``build_training_set`` is the seeded, shuffled set that
``train`` uses, and ``replay_sample`` picks the old passages that an update trains again.
"""

from .assessment import NegativeSampling, assessment_examples
from .indexing import indexing_examples
from .mixing import MixConfig, TrainingSet, build_training_set, replay_sample
from .queries import answers_from_metadata
from .sentences import split_sentences
from .supervised import supervised_examples
from .targets import unique_depths
from .validation import split_validation

__all__ = [
    "MixConfig",
    "NegativeSampling",
    "TrainingSet",
    "answers_from_metadata",
    "assessment_examples",
    "build_training_set",
    "indexing_examples",
    "replay_sample",
    "split_sentences",
    "split_validation",
    "supervised_examples",
    "unique_depths",
]
