"""What is built from a tokenized corpus and searched at query time: the prefix trie that
constrains generation, the passage store, metadata filters, and the BM25 and dense indexes that
hybrid retrieval and the baselines use.

``concat_ranges`` is exported for the trie constraint in ``retrieval``, which gathers the trie's
child slices the same way the trie does.
"""

from .bm25 import BM25Index
from .dense import DEFAULT_DENSE_MODEL, DenseIndex, dense_model_available
from .filters import MISSING, Filter, compile_filter, filter_mask, passage_field
from .keys import PassageKeys
from .store import PassageStore
from .trie import PassageTrie
from .trie_layout import END_TOKEN, MAX_TOKEN_ID, concat_ranges

__all__ = [
    "DEFAULT_DENSE_MODEL",
    "END_TOKEN",
    "MAX_TOKEN_ID",
    "MISSING",
    "BM25Index",
    "DenseIndex",
    "Filter",
    "PassageKeys",
    "PassageStore",
    "PassageTrie",
    "compile_filter",
    "concat_ranges",
    "dense_model_available",
    "filter_mask",
    "passage_field",
]
