"""What is built from a tokenized corpus and searched at query time: the prefix trie that
constrains generation, the passage store, metadata filters, and a BM25 index."""

from .bm25 import BM25Index
from .filters import Filter, compile_filter, filter_mask
from .store import PassageStore
from .trie import END_TOKEN, MAX_TOKEN_ID, PassageTrie

__all__ = [
    "END_TOKEN",
    "MAX_TOKEN_ID",
    "BM25Index",
    "Filter",
    "PassageStore",
    "PassageTrie",
    "compile_filter",
    "filter_mask",
]
