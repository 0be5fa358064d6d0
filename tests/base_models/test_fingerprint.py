"""Tests of ``selfretrieval_integrations.base_models.fingerprint``."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from selfretrieval_integrations.base_models import load_base_tokenizer, tokenizer_fingerprint

from .helpers import UNICODE_TEXTS


def test_fingerprint_stable_across_save_and_load(base_tokenizer, tmp_path):
    fingerprint = tokenizer_fingerprint(base_tokenizer)
    assert len(fingerprint) == 64
    base_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert tokenizer_fingerprint(reloaded) == fingerprint
    text = UNICODE_TEXTS[0] + UNICODE_TEXTS[2]
    assert reloaded(text).input_ids == base_tokenizer(text).input_ids


def test_fingerprint_ignores_runtime_truncation_and_padding(base_tokenizer):
    fingerprint = tokenizer_fingerprint(base_tokenizer)
    base_tokenizer(["a b c d e f", "a"], truncation=True, max_length=3, padding="max_length")
    assert tokenizer_fingerprint(base_tokenizer) == fingerprint


def test_fingerprints_differ_between_tokenizers(tiny_tokenizer, tiny_sp_tokenizer, request):
    fingerprints = {tokenizer_fingerprint(tiny_tokenizer), tokenizer_fingerprint(tiny_sp_tokenizer)}
    assert len(fingerprints) == 2
    try:
        smollm2 = request.getfixturevalue("smollm2_tokenizer")
    except pytest.skip.Exception:
        return
    assert tokenizer_fingerprint(smollm2) not in fingerprints


def test_fingerprint_sees_added_tokens_and_special_ids():
    tokenizer = load_base_tokenizer("tiny")
    fingerprint = tokenizer_fingerprint(tokenizer)
    tokenizer.add_tokens(["<doc>"])
    assert tokenizer_fingerprint(tokenizer) != fingerprint

    other = load_base_tokenizer("tiny")
    other.pad_token = "<|bos|>"
    assert tokenizer_fingerprint(other) != fingerprint
