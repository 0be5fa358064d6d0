"""Exceptions raised by the library.

Every error says what was given, what is allowed, and how to fix it. They all derive from
``SelfRetrievalError`` so callers can catch the library's problems in one place.
"""

from __future__ import annotations


class SelfRetrievalError(Exception):
    """Base class for every error this library raises on purpose."""


class CorpusError(SelfRetrievalError, ValueError):
    """The corpus (documents, passages, ids) is unusable as given."""


class QueryError(SelfRetrievalError, ValueError):
    """A query or a retrieval argument (k, filter) is invalid."""


class TokenizationError(SelfRetrievalError, ValueError):
    """A tokenizer behaves in a way the rendering cannot support."""


class ArtifactError(SelfRetrievalError, OSError):
    """A saved model folder is missing, corrupted, or incompatible."""


class ModelLoadError(SelfRetrievalError, OSError):
    """A base model could not be resolved or loaded."""
