"""The manifest: one JSON file that records every choice made for an artifact, and the size and
sha256 of every other file, so that a missing or corrupted file is named at load time instead of
surfacing as a strange tensor error later."""

from __future__ import annotations

import hashlib
import json
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from selfretrieval_integrations.errors import ArtifactError

from .generations import POINTER_FILE, resolve
from .layout import MANIFEST_FILE, WEIGHT_DIRS

SCHEMA_VERSION = 2
"""2: the artifact holds generations behind a pointer (``artifact.generations``); 1: one folder."""
FORMAT_NAME = "selfretrieval-artifact"


def library_versions() -> dict[str, str]:
    versions = {}
    for name in (
        "selfretrieval-integrations",
        "torch",
        "transformers",
        "marisa-trie",
        "numpy",
        "peft",
        "safetensors",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under ``folder`` except the manifest."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST_FILE:
            rel = path.relative_to(folder).as_posix()
            files[rel] = {"size": path.stat().st_size, "sha256": file_digest(path)}
    return files


def write_manifest(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    manifest = dict(manifest)
    manifest["format"] = FORMAT_NAME
    manifest["schema_version"] = SCHEMA_VERSION
    manifest["library_versions"] = library_versions()
    manifest["files"] = list_files(folder)
    with open(folder / MANIFEST_FILE, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    return manifest


def read_manifest(
    folder: str | Path, *, verify: bool = True, verify_weights: bool = True
) -> dict[str, Any]:
    """Read and validate a manifest; with ``verify``, check every listed file's size and hash.

    ``folder`` is a generation's folder or the artifact's (whose current generation is read).
    ``verify_weights=False`` skips the weights and tokenizer (hundreds of MB to hash) where a
    caller keeps the ones it already checked, as a refresh or a delete does.
    """
    folder = Path(folder)
    if (folder / POINTER_FILE).exists():
        folder, _ = resolve(folder)
    if not folder.is_dir():
        raise ArtifactError(f"no artifact folder at {folder}")
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ArtifactError(
            f"{folder} has no {MANIFEST_FILE}: it is not a Self-Retrieval artifact (create one "
            "with SelfRetrievalModel.save_pretrained or `selfretrieval train`)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(
            f"{path} is not valid JSON ({error}): the artifact is corrupted"
        ) from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{path} is not a {FORMAT_NAME} manifest")
    version = manifest.get("schema_version")
    if not isinstance(version, int):
        raise ArtifactError(f"{path} has no integer schema_version")
    if version > SCHEMA_VERSION:
        made_by = manifest.get("library_versions", {}).get("selfretrieval-integrations", "?")
        raise ArtifactError(
            f"{folder} uses artifact schema {version}, written by selfretrieval-integrations "
            f"{made_by}; this version reads schema {SCHEMA_VERSION} or older: upgrade with "
            "`pip install -U selfretrieval-integrations`"
        )
    if verify:
        files = manifest.get("files", {})
        if not verify_weights:
            files = {k: v for k, v in files.items() if k.split("/")[0] not in WEIGHT_DIRS}
        verify_files(folder, files)
    return manifest


def verify_files(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    for rel, info in files.items():
        path = folder / rel
        if not path.is_file():
            raise ArtifactError(f"artifact file is missing: {path}")
        size = path.stat().st_size
        if size != info.get("size"):
            raise ArtifactError(
                f"artifact file {path} has {size} bytes, the manifest says {info.get('size')}: "
                "it is corrupted or was changed after saving"
            )
        if info.get("sha256") and file_digest(path) != info["sha256"]:
            raise ArtifactError(
                f"artifact file {path} does not match its sha256 in the manifest: it is "
                "corrupted or was changed after saving"
            )


def history_entry(operation: str, **details: Any) -> dict[str, Any]:
    """One line of the manifest's ``history``: what changed the artifact, and when (UTC)."""
    return {
        "operation": operation,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **details,
    }
