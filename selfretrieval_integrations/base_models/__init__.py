"""Base causal language models: resolving a name to weights and a tokenizer (offline SmolLM2,
tiny test models, hub ids, local paths), devices and dtypes, and the tokenizer fingerprint."""

from .compat import cache_kwarg, logits_to_keep_kwarg
from .loading import (
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

__all__ = [
    "BASE_MODEL_ALIASES",
    "BASE_MODEL_DESCRIPTIONS",
    "SMOLLM2_INSTALL_COMMAND",
    "cache_kwarg",
    "canonical_base_model_name",
    "default_cache_dir",
    "find_smollm2_gguf",
    "load_base_model",
    "load_base_tokenizer",
    "logits_to_keep_kwarg",
    "resolve_device_and_dtype",
    "tokenizer_fingerprint",
]
