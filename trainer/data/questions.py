"""Query-likelihood examples: a passage, then a question it answers.

Self-assessment by query likelihood scores a candidate by how likely the model finds the query
after reading it (UPR, Sachan et al. 2022). A model fine-tuned on retrieval targets alone would
drift away from that skill, so each (training question, relevant passage) pair also trains the
question after its passage. Only positives are needed: a passage that does not answer a question
simply makes it unlikely, so there is no refusal label to learn and no negative to sample.
"""

from __future__ import annotations

from selfretrieval_integrations.corpus import Corpus, cut_words
from selfretrieval_integrations.retrieval import EncodedExample, Renderer

from .queries import ResolvedQueries


def encode_questions(
    renderer: Renderer, corpus: Corpus, resolved: ResolvedQueries, *, max_passage_words: int
) -> list[EncodedExample]:
    """One example per (query, relevant passage), the passage cut as assessment cuts it."""
    examples: list[EncodedExample] = []
    for query in resolved.queries:
        for p in query.positives:
            passage = corpus[p]
            text = cut_words(passage.text, max_passage_words)
            example = renderer.question_example(query.text, passage.title, text)
            example.metadata = {"kind": "question", "query": query.qid, "passage": p}
            examples.append(example)
    return examples
