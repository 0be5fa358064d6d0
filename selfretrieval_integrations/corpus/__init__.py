"""The corpus: documents, their passages, words, chunking, and loaders for files on disk.

Everything that knows what a passage *is* lives here; nothing here knows about models.
"""

from .chunking import ChunkingConfig, Tokenizer, chunk_document
from .collection import Corpus
from .documents import Document, Passage
from .loaders import (
    load_beir_qrels,
    load_beir_queries,
    load_beir_query_metadata,
    load_corpus,
    quickstart_dir,
)
from .words import MAX_WORD_CHARS, count_words, cut_words, word_spans

__all__ = [
    "MAX_WORD_CHARS",
    "ChunkingConfig",
    "Corpus",
    "Document",
    "Passage",
    "Tokenizer",
    "chunk_document",
    "count_words",
    "cut_words",
    "load_beir_qrels",
    "load_beir_queries",
    "load_beir_query_metadata",
    "load_corpus",
    "quickstart_dir",
    "word_spans",
]
