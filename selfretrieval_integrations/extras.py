"""Optional dependencies (the package's extras), imported on first use with one kind of message.

A missing package is named together with the command that installs it, whichever part of the
library needed it (BM25, evaluation metrics, a framework, the trainer).
"""

from __future__ import annotations

import importlib
from types import ModuleType


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra``."""
    return f'pip install "selfretrieval-integrations[{extra}]"'


def missing_extra(
    package: str, extra: str, purpose: str, error: ImportError | None = None
) -> ImportError:
    """The ``ImportError`` for ``package`` missing: what needed it and how to install it."""
    reason = f" ({error})" if error is not None else ""
    return ImportError(
        f"{purpose} needs {package}, which could not be imported{reason}; it is part of the "
        f"{extra!r} extra: {install_hint(extra)}"
    )


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise ``missing_extra`` naming ``extra`` and ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise missing_extra(module, extra, purpose, error) from error
