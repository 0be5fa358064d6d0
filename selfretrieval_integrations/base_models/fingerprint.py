"""The tokenizer fingerprint: an artifact records which tokenizer it was built with, and refuses
a different one, by a hash of everything that decides the token ids."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["tokenizer_fingerprint"]

_FINGERPRINT_VERSION = 1
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
