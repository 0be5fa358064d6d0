"""Self-Retrieval: one small causal LLM as a complete retrieval system.

The public names are listed once, in ``__init__.pyi`` (which type checkers read too), and
imported lazily on first use (``lazy_loader``), so that ``import selfretrieval_integrations``
stays cheap and never imports LangChain or LlamaIndex (those live in their own optional modules).
"""

import lazy_loader

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
