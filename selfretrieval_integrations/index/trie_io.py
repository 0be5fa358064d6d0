"""The passage trie's file format: a folder of ``.npy`` arrays, ``trie.marisa`` and ``trie.json``.

``trie.json`` records the format version, the counts, the end marker, the token code and every
array's dtype and shape, so that loading checks each file against it and names the one that is
missing, truncated or from another trie, instead of failing later inside a look-up. Arrays and the
marisa trie load memory-mapped, so opening a large artifact costs no copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import marisa_trie
import numpy as np

from selfretrieval_integrations.errors import ArtifactError

from .trie_layout import ARRAY_NAMES, END_TOKEN, TrieParts, readonly

__all__ = ["read_trie", "write_trie"]

FORMAT_NAME = "selfretrieval-passage-trie"
FORMAT_VERSION = 2
MANIFEST_FILE = "trie.json"
MARISA_FILE = "trie.marisa"
TOKEN_CODE = "token + 1 (0 = end marker)"


def write_trie(folder: str | Path, arrays: dict[str, np.ndarray], marisa: marisa_trie.Trie) -> Path:
    """Write a trie's arrays and marisa trie into ``folder`` (created if needed); the caller
    handles atomicity."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ARRAY_NAMES:
        np.save(folder / f"{name}.npy", np.ascontiguousarray(arrays[name]))
    marisa.save(str(folder / MARISA_FILE))
    n_nodes = len(arrays["child_node"]) + 1
    n_internal = len(arrays["internal_depth"])
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": _library_version(),
        "n_nodes": n_nodes,
        "n_internal": n_internal,
        "n_leaves": n_nodes - n_internal,
        "n_passages": len(arrays["leaf_passages"]),
        "n_marisa_keys": len(marisa),
        "end_token": END_TOKEN,
        "token_code": TOKEN_CODE,
        "token_dtype": np.dtype(arrays["child_code"].dtype).str,
        "marisa_token_encoding": "chr(t + 1), plus 0x800 from U+D800 on",
        "arrays": {
            name: {"dtype": np.dtype(arrays[name].dtype).str, "shape": list(arrays[name].shape)}
            for name in ARRAY_NAMES
        },
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def read_trie(folder: str | Path, mmap: bool = True) -> TrieParts:
    """Read the arrays (read-only) and marisa trie written by :func:`write_trie`.

    Raises ``ArtifactError`` naming the file that is missing, unreadable or inconsistent.
    """
    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ArtifactError(
            f"{manifest_path} is missing: {folder} is not a saved PassageTrie (write one with "
            "PassageTrie.save)"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        version = int(manifest["format_version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{manifest_path} is corrupt ({exc}); rebuild the trie") from exc
    if manifest.get("format") != FORMAT_NAME or version != FORMAT_VERSION:
        raise ArtifactError(
            f"{manifest_path} has format {manifest.get('format')!r} version {version}; this "
            f"library reads {FORMAT_NAME!r} version {FORMAT_VERSION} only (rebuild the trie "
            "with this version, or use the selfretrieval-integrations version that wrote it)"
        )
    try:
        counts = {k: int(manifest[k]) for k in ("n_nodes", "n_internal", "n_leaves", "n_passages")}
        n_keys = int(manifest["n_marisa_keys"])
        end_token = int(manifest["end_token"])
        token_dtype = np.dtype(manifest["token_dtype"])
        token_code = manifest["token_code"]
        specs = manifest["arrays"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{manifest_path} is corrupt ({exc}); rebuild the trie") from exc
    if (
        end_token != END_TOKEN
        or token_code != TOKEN_CODE
        or token_dtype not in (np.dtype(np.uint16), np.dtype(np.uint32))
        or counts["n_internal"] + counts["n_leaves"] != counts["n_nodes"]
    ):
        raise ArtifactError(
            f"{manifest_path} records end token {end_token}, token code {token_code!r} as "
            f"{token_dtype} and {counts}; this library writes {END_TOKEN}, {TOKEN_CODE!r} as "
            "uint16 or uint32 and n_internal + n_leaves = n_nodes; rebuild the trie"
        )
    n_int = counts["n_internal"]
    expected = {
        "child_start": n_int + 1,
        "child_node": counts["n_nodes"] - 1,
        "child_code": counts["n_nodes"] - 1,
        "label_start": n_int + 1,
        "internal_depth": n_int,
        "leaf_lo": n_int,
        "leaf_hi": n_int,
        "is_title_end": n_int,
        "leaf_passages": counts["n_passages"],
        "node_of_key": n_keys,
    }
    arrays: dict[str, np.ndarray] = {}
    for name in ARRAY_NAMES:
        path = folder / f"{name}.npy"
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; the saved trie is incomplete, rebuild it")
        try:
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ArtifactError(
                f"{path} is corrupt or truncated ({exc}); rebuild the trie"
            ) from exc
        spec = specs.get(name, {})
        want_len = expected.get(name)
        if (
            array.ndim != 1
            or (want_len is not None and len(array) != want_len)
            or list(array.shape) != spec.get("shape")
            or np.dtype(array.dtype).str != spec.get("dtype")
            or (name.endswith("_code") and array.dtype != token_dtype)
        ):
            raise ArtifactError(
                f"{path} holds {array.dtype} {array.shape} but {manifest_path} expects "
                f"{spec.get('dtype')} {spec.get('shape')}; the trie files do not belong "
                "together, rebuild the trie"
            )
        # A plain ndarray view of the memory map: same pages, cheaper to index than np.memmap.
        arrays[name] = readonly(np.asarray(array))
    for name, table, ends_at in (
        ("label_code", "label_start", len(arrays["label_code"])),
        ("child_node", "child_start", len(arrays["child_node"])),
        ("leaf_passages", "multi_extra", counts["n_passages"] - counts["n_leaves"]),
    ):
        if len(arrays[table]) == 0 or int(arrays[table][-1]) != ends_at:
            raise ArtifactError(
                f"{folder / (name + '.npy')} does not match {table}.npy; rebuild the trie"
            )
    marisa_path = folder / MARISA_FILE
    if not marisa_path.is_file():
        raise ArtifactError(f"{marisa_path} is missing; the saved trie is incomplete, rebuild it")
    marisa = marisa_trie.Trie()
    try:
        if mmap:
            marisa.mmap(str(marisa_path))
        else:
            marisa.load(str(marisa_path))
    except Exception as exc:  # marisa raises plain RuntimeError/MemoryError on bad files
        raise ArtifactError(
            f"{marisa_path} is corrupt or truncated ({exc}); rebuild the trie"
        ) from exc
    if len(marisa) != n_keys:
        raise ArtifactError(
            f"{marisa_path} holds {len(marisa)} paths but {manifest_path} expects {n_keys}; "
            "rebuild the trie"
        )
    return arrays, marisa


def _library_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return "unknown"
    try:
        return version("selfretrieval-integrations")
    except PackageNotFoundError:
        return "unknown"
