"""The artifact folder a trained model is saved as: its layout, the manifest that records every
choice, safe writes, and deleting documents (which needs no training).

``delete_documents`` lives in ``artifact.delete`` and is not imported here: it builds a trie, so it
sits above ``retrieval``, while everything else in this package sits below it.
"""

from .files import atomic_folder, link_or_copy, load_json, save_json
from .layout import (
    ADAPTER_DIR,
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
from .manifest import history_entry, read_manifest, verify_files, write_manifest

__all__ = [
    "ADAPTER_DIR",
    "MANIFEST_FILE",
    "MODEL_DIR",
    "STORE_DIR",
    "TOKENIZER_DIR",
    "TRIE_DIR",
    "WEIGHT_DIRS",
    "atomic_folder",
    "checkpoint_dir",
    "history_entry",
    "link_or_copy",
    "load_json",
    "load_trie_fingerprint",
    "read_manifest",
    "save_index",
    "save_json",
    "verify_files",
    "write_manifest",
]
