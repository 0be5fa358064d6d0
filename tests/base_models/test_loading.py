"""Tests of ``selfretrieval_integrations.base_models.loading``: names, paths, errors, and the
tokenizer behaviour every loaded base tokenizer shares."""

from __future__ import annotations

import pytest
import torch

from selfretrieval_integrations.base_models import (
    BASE_MODEL_ALIASES,
    BASE_MODEL_DESCRIPTIONS,
    canonical_base_model_name,
    load_base_model,
    load_base_tokenizer,
    tokenizer_fingerprint,
)
from selfretrieval_integrations.errors import ModelLoadError, SelfRetrievalError

from .helpers import UNICODE_TEXTS, state


@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_tokenizers_round_trip_unicode(base_tokenizer, text):
    ids = base_tokenizer.encode(text, add_special_tokens=False)
    assert ids
    assert base_tokenizer.unk_token_id is None or base_tokenizer.unk_token_id not in ids
    assert base_tokenizer.decode(ids) == text


def test_pad_token_defaults_to_eos(tiny_tokenizer, tiny_sp_tokenizer):
    assert tiny_tokenizer.pad_token == tiny_tokenizer.eos_token == "<|endoftext|>"
    assert tiny_sp_tokenizer.pad_token == tiny_sp_tokenizer.eos_token == "</s>"


def test_aliases_are_documented():
    assert set(BASE_MODEL_ALIASES.values()) == set(BASE_MODEL_DESCRIPTIONS)
    assert canonical_base_model_name("SmolLM2-135M-Instruct") == "smollm2-135m"
    assert canonical_base_model_name("smollm2-135M") == "smollm2-135m"
    assert canonical_base_model_name("TINY") == "tiny"
    assert canonical_base_model_name("./tiny") is None
    assert canonical_base_model_name("HuggingFaceTB/SmolLM2-135M-Instruct") is None


def test_missing_local_path_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_base_model(missing, device="cpu")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_base_tokenizer(missing)


def test_folder_without_model_files_gives_hint(tmp_path, monkeypatch):
    (tmp_path / "tiny-s").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError) as info:
        load_base_model("tiny-s", device="cpu")
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message
    assert "smollm2-135m" in message
    assert "Did you mean the alias 'tiny-sp'" in message
    assert isinstance(info.value, SelfRetrievalError)


def test_path_named_like_an_alias_is_loaded_as_a_folder(tmp_path, monkeypatch):
    model, tokenizer = load_base_model("tiny", device="cpu")
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    loaded, loaded_tokenizer = load_base_model("./tiny", device="cpu")
    assert loaded.config._name_or_path == str(tmp_path / "tiny")
    assert tokenizer_fingerprint(loaded_tokenizer) == tokenizer_fingerprint(tokenizer)
    weights, loaded_weights = state(model), state(loaded)
    assert all(torch.equal(weights[key], loaded_weights[key]) for key in weights)


def test_invalid_hub_id_gives_hint():
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        load_base_tokenizer("not a valid//repo id")
