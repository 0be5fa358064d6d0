"""Differences between the transformers versions this library supports."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any


def _forward_parameters(model: Any) -> Mapping[str, Any] | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return None


def logits_to_keep_kwarg(model: Any) -> str | None:
    """Name of the argument that limits logits to the last positions, if ``model`` has one.

    transformers 4.50+ calls it ``logits_to_keep`` (4.45-4.49: ``num_logits_to_keep``); other
    models compute every position's logits, which is correct, only slower.
    """
    parameters = _forward_parameters(model) or {}
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in parameters:
            return name
    return None


def cache_kwarg(model: Any) -> str:
    """Name of the key/value cache argument of ``model.forward``.

    transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns until it is
    removed); older releases only know ``past_key_values``.
    """
    parameters = _forward_parameters(model)
    if parameters is None:
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


def dtype_kwarg() -> str:
    """Name of the dtype argument of ``from_pretrained``: ``dtype`` since transformers 4.56,
    ``torch_dtype`` before."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


@contextlib.contextmanager
def quiet_weight_loading() -> Iterator[None]:
    """No "Loading weights" progress bar while an artifact's own weights load (transformers 5
    draws one per load): a query from the command line prints its results, not load noise."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
