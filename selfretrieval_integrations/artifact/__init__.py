"""The artifact folder a trained model is saved as: immutable generations behind an atomically
replaced pointer, one writer at a time, the layout of a generation, and the manifest that records
every choice. What changes an artifact (training, deleting) lives with the code that computes it.
"""

from .files import link_or_copy, load_json, save_json
from .generations import current_generation, generation_dir, new_generation, resolve
from .layout import (
    ADAPTER_DIR,
    KEYS_DIR,
    MANIFEST_FILE,
    MODEL_DIR,
    STORE_DIR,
    TOKENIZER_DIR,
    TRIE_DIR,
    WEIGHT_DIRS,
    checkpoint_dir,
    load_trie_fingerprint,
    save_index,
)
from .lock import writer_lock
from .manifest import history_entry, read_manifest, verify_files, write_manifest

__all__ = [
    "ADAPTER_DIR",
    "KEYS_DIR",
    "MANIFEST_FILE",
    "MODEL_DIR",
    "STORE_DIR",
    "TOKENIZER_DIR",
    "TRIE_DIR",
    "WEIGHT_DIRS",
    "checkpoint_dir",
    "current_generation",
    "generation_dir",
    "history_entry",
    "link_or_copy",
    "load_json",
    "load_trie_fingerprint",
    "new_generation",
    "read_manifest",
    "resolve",
    "save_index",
    "save_json",
    "verify_files",
    "write_manifest",
    "writer_lock",
]
