"""Self-Retrieval: one small causal LLM as a complete retrieval system.

Names are imported lazily so that ``import selfretrieval_integrations`` stays cheap and never
imports LangChain or LlamaIndex (those live in their own optional modules).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "SelfRetrievalModel": "model",
    "RetrievalResult": "model",
    "RetrievalConfig": "model",
    "DecodingConfig": "decoding",
    "AssessmentConfig": "assessment",
    "Fusion": "fusion",
    "RerankConfig": "reranking",
    "RerankMethod": "reranking",
    "rerank": "reranking",
    "PromptTemplate": "rendering",
    "Renderer": "rendering",
    "PassageTrie": "trie",
    "Corpus": "corpus",
    "Document": "corpus",
    "Passage": "corpus",
    "ChunkingConfig": "corpus",
    "load_corpus": "loaders",
    "load_base_model": "base_models",
    "SelfRetrievalError": "errors",
    "CorpusError": "errors",
    "QueryError": "errors",
    "ArtifactError": "errors",
    "ModelLoadError": "errors",
    "TokenizationError": "errors",
}

__all__ = [
    "ArtifactError",
    "AssessmentConfig",
    "ChunkingConfig",
    "Corpus",
    "CorpusError",
    "DecodingConfig",
    "Document",
    "Fusion",
    "ModelLoadError",
    "Passage",
    "PassageTrie",
    "PromptTemplate",
    "QueryError",
    "Renderer",
    "RerankConfig",
    "RerankMethod",
    "RetrievalConfig",
    "RetrievalResult",
    "SelfRetrievalError",
    "SelfRetrievalModel",
    "TokenizationError",
    "load_base_model",
    "load_corpus",
    "rerank",
]

if TYPE_CHECKING:
    from .assessment import AssessmentConfig
    from .base_models import load_base_model
    from .corpus import ChunkingConfig, Corpus, Document, Passage
    from .decoding import DecodingConfig
    from .errors import (
        ArtifactError,
        CorpusError,
        ModelLoadError,
        QueryError,
        SelfRetrievalError,
        TokenizationError,
    )
    from .fusion import Fusion
    from .loaders import load_corpus
    from .model import RetrievalConfig, RetrievalResult, SelfRetrievalModel
    from .rendering import PromptTemplate, Renderer
    from .reranking import RerankConfig, RerankMethod, rerank
    from .trie import PassageTrie


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'selfretrieval_integrations' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
