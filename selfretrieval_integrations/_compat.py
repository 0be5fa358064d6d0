"""Differences between the transformers versions this library supports."""

from __future__ import annotations

import inspect
from typing import Any


def cache_kwarg(model: Any) -> str:
    """Name of the key/value cache argument of ``model.forward``.

    transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns until it is
    removed); older releases only know ``past_key_values``.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        parameters = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"
