"""Tests of ``selfretrieval_integrations.base_models.tiny``: the tiny random test models."""

from __future__ import annotations

import time

import pytest
import torch

from selfretrieval_integrations.base_models import (
    load_base_model,
    load_base_tokenizer,
    tokenizer_fingerprint,
)

from .helpers import state


@pytest.mark.parametrize("name", ["tiny", "tiny-sp"])
def test_tiny_builds_deterministically_without_touching_global_rng(name):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    model_a, tokenizer_a = load_base_model(name, device="cpu")
    assert torch.equal(torch.get_rng_state(), before), "global torch RNG state changed"

    torch.manual_seed(999)  # a different global state must not change the weights
    model_b, tokenizer_b = load_base_model(name, device="cpu")

    state_a, state_b = state(model_a), state(model_b)
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)
    assert tokenizer_fingerprint(tokenizer_a) == tokenizer_fingerprint(tokenizer_b)
    assert tokenizer_a.get_vocab() == tokenizer_b.get_vocab()


@pytest.mark.parametrize("name", ["tiny", "tiny-sp"])
def test_tiny_model_architecture(name):
    model, tokenizer = load_base_model(name, device="cpu")
    config = model.config
    assert config.model_type == "llama"
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (64, 2, 128)
    assert (config.num_attention_heads, config.num_key_value_heads) == (4, 2)
    assert config.max_position_embeddings == 4096
    assert config.tie_word_embeddings
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    assert config.vocab_size == len(tokenizer)
    assert 1000 <= len(tokenizer) <= 2100
    assert not model.training
    assert next(model.parameters()).device.type == "cpu"
    assert next(model.parameters()).dtype == torch.float32
    assert config.eos_token_id == tokenizer.eos_token_id
    assert config.pad_token_id == tokenizer.pad_token_id

    ids = tokenizer("Self-retrieval in one model.", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


def test_tiny_respects_explicit_dtype():
    model, _ = load_base_model("tiny", device="cpu", dtype="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_tiny_tokenizers_are_built_quickly():
    load_base_tokenizer("tiny")  # warm up imports
    for name in ("tiny", "tiny-sp"):
        start = time.perf_counter()
        load_base_model(name, device="cpu")
        assert time.perf_counter() - start < 2.0


def test_tiny_sp_uses_byte_fallback(tiny_sp_tokenizer):
    tokens = tiny_sp_tokenizer.tokenize("🤖")
    assert tokens == ["▁", "<0xF0>", "<0x9F>", "<0xA4>", "<0x96>"]
    vocab = tiny_sp_tokenizer.get_vocab()
    assert [vocab["<unk>"], vocab["<s>"], vocab["</s>"], vocab["<0x00>"], vocab["<0xFF>"]] == [
        0,
        1,
        2,
        3,
        258,
    ]


def test_tiny_sp_sentencepiece_quirks(tiny_sp_tokenizer):
    """As HF Llama/Mistral fast tokenizers: one leading space is absorbed, '▁' decodes to ' '."""
    encode = tiny_sp_tokenizer.encode
    assert encode(" hello", add_special_tokens=False) == encode("hello", add_special_tokens=False)
    assert tiny_sp_tokenizer.decode(encode("a▁b", add_special_tokens=False)) == "a b"
    assert tiny_sp_tokenizer.tokenize("hello world")[0].startswith("▁")


def test_bos_behaviour(tiny_tokenizer, tiny_sp_tokenizer):
    tiny_ids = tiny_tokenizer("the retrieval").input_ids
    assert tiny_ids == tiny_tokenizer.encode("the retrieval", add_special_tokens=False)
    assert tiny_tokenizer.bos_token == "<|bos|>"
    assert tiny_tokenizer.bos_token_id not in tiny_ids

    sp_ids = tiny_sp_tokenizer("the retrieval").input_ids
    assert sp_ids[0] == tiny_sp_tokenizer.bos_token_id == 1
    assert sp_ids[1:] == tiny_sp_tokenizer.encode("the retrieval", add_special_tokens=False)
    assert tiny_sp_tokenizer.eos_token_id not in sp_ids


def test_special_token_strings_in_text_become_special_ids(tiny_tokenizer, tiny_sp_tokenizer):
    tiny_ids = tiny_tokenizer.encode("a<|endoftext|>b", add_special_tokens=False)
    assert tiny_tokenizer.eos_token_id in tiny_ids
    sp_ids = tiny_sp_tokenizer.encode("a</s>b", add_special_tokens=False)
    assert tiny_sp_tokenizer.eos_token_id in sp_ids
