"""Retrieval with one causal LM: prompts and targets (rendering), the trie constraint, the
decoder, self-assessment, score fusion, reranking, and ``SelfRetrievalModel`` over them all."""

from .assessment import AssessmentConfig, SelfAssessor
from .constraints import TrieConstraint
from .decoding import ConstrainedDecoder, DecodingConfig, DecodingStats
from .fusion import Candidates, Fusion, fuse_scores, rank_candidates
from .model import (
    RetrievalConfig,
    RetrievalResult,
    SelfRetrievalModel,
    as_corpus,
    build_trie,
    passage_keys,
)
from .rendering import IGNORE_INDEX, EncodedExample, EncodedTarget, PromptTemplate, Renderer
from .reranking import RerankConfig, RerankMethod, rerank, rerank_by_relevance
from .updates import delete_documents, remaining_passages

__all__ = [
    "IGNORE_INDEX",
    "AssessmentConfig",
    "Candidates",
    "ConstrainedDecoder",
    "DecodingConfig",
    "DecodingStats",
    "EncodedExample",
    "EncodedTarget",
    "Fusion",
    "PromptTemplate",
    "Renderer",
    "RerankConfig",
    "RerankMethod",
    "RetrievalConfig",
    "RetrievalResult",
    "SelfAssessor",
    "SelfRetrievalModel",
    "TrieConstraint",
    "as_corpus",
    "build_trie",
    "delete_documents",
    "fuse_scores",
    "passage_keys",
    "rank_candidates",
    "remaining_passages",
    "rerank",
    "rerank_by_relevance",
]
