"""Retrieval with one causal LM: prompts and targets (rendering), the trie constraint, the
decoder, self-assessment, score fusion, reranking, and ``SelfRetrievalModel`` over them all."""

from .assessment import AssessmentConfig, SelfAssessor
from .constraints import TrieConstraint
from .convex import (
    HybridConfig,
    RetrievalMode,
    bounded_convex_scores,
    convex_scores,
    fit_weights,
    minmax,
)
from .decoding import ConstrainedDecoder, DecodingConfig, DecodingStats
from .fitting import FitQuestion, fit_from_questions, fit_hybrid, save_retrieval_config
from .fusion import (
    Candidates,
    Fusion,
    bounded_relevance,
    fuse_scores,
    logprob_fused,
    rank_candidates,
)
from .model import (
    RetrievalConfig,
    RetrievalResult,
    SelfRetrievalModel,
    as_corpus,
    build_trie,
    passage_keys,
)
from .rendering import IGNORE_INDEX, EncodedExample, EncodedTarget, PromptTemplate, Renderer
from .reranking import RerankConfig, RerankMethod, rerank, rerank_by_relevance, rerank_convex
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
    "FitQuestion",
    "Fusion",
    "HybridConfig",
    "PromptTemplate",
    "Renderer",
    "RerankConfig",
    "RerankMethod",
    "RetrievalConfig",
    "RetrievalMode",
    "RetrievalResult",
    "SelfAssessor",
    "SelfRetrievalModel",
    "TrieConstraint",
    "as_corpus",
    "bounded_convex_scores",
    "bounded_relevance",
    "build_trie",
    "convex_scores",
    "delete_documents",
    "fit_from_questions",
    "fit_hybrid",
    "fit_weights",
    "fuse_scores",
    "logprob_fused",
    "minmax",
    "passage_keys",
    "rank_candidates",
    "remaining_passages",
    "rerank",
    "rerank_by_relevance",
    "rerank_convex",
    "save_retrieval_config",
]
