"""Where each part of an artifact lives, in one place for every reader and writer.

Layout::

    manifest.json          schema version, versions, base model, fingerprints, template, ...
    tokenizer/             the tokenizer's own files
    model/ | adapter/      full weights (safetensors) or a peft LoRA adapter over base_model
    trie/                  marisa trie + memory-mapped node arrays + fingerprint.json
    store/                 passages.jsonl + passages.offsets.npy
    keys/                  the token ids of every trie key (written by deletes; optional)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from .files import load_json, save_json

MANIFEST_FILE = "manifest.json"
TOKENIZER_DIR = "tokenizer"
MODEL_DIR = "model"
ADAPTER_DIR = "adapter"
TRIE_DIR = "trie"
STORE_DIR = "store"
KEYS_DIR = "keys"
TRIE_FINGERPRINT_FILE = "fingerprint.json"
WEIGHT_DIRS = (TOKENIZER_DIR, MODEL_DIR, ADAPTER_DIR)
"""The folders a change of corpus leaves as they are (hard-linked into the new version)."""


class _Saveable(Protocol):
    def save(self, folder: Path) -> Any: ...

    def __len__(self) -> int: ...


def checkpoint_dir(artifact: str | Path) -> Path:
    """Where training checkpoints of ``artifact`` go: beside it, so a rerun resumes them."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".checkpoints")


def save_index(
    folder: Path,
    trie: _Saveable,
    store: _Saveable,
    *,
    tokenizer_fingerprint: str,
    prompt_template: dict[str, Any],
) -> None:
    """Write the trie (with the fingerprint of what built it) and the passage store."""
    trie.save(folder / TRIE_DIR)
    save_json(
        folder / TRIE_DIR / TRIE_FINGERPRINT_FILE,
        {"tokenizer_fingerprint": tokenizer_fingerprint, "prompt_template": prompt_template},
    )
    store.save(folder / STORE_DIR)


def load_trie_fingerprint(folder: Path) -> dict[str, Any]:
    """The tokenizer fingerprint and template that the saved trie was built with."""
    return load_json(folder / TRIE_DIR / TRIE_FINGERPRINT_FILE, "trie fingerprint")
