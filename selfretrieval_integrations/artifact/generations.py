"""Immutable generations and the pointer that names the current one.

Every write (train, add, delete, a new configuration) builds a complete new generation beside the
others and then replaces one small pointer file atomically, the pattern of Lucene's
``segments_N`` and LMDB's meta pages::

    artifact/
      CURRENT                 {"generation": 7, ...}, replaced atomically (os.replace)
      generations/000006/     manifest.json tokenizer/ model/ | adapter/ trie/ store/
      generations/000007/     weights hard-linked from 000006 when unchanged
      .write.lock             the writer lock (``artifact.lock``)

A reader resolves the pointer once and reads only that generation, so it never sees a mix of two
versions; a writer killed at any moment leaves the pointer on the old generation, and its
half-built folder is removed by the next writer.

Retention: the current generation and the one before it are always kept; an older one is removed
by a later write once its successor has been current for ``RETENTION_S`` seconds. A loaded model
is not affected (its weights are in memory, its trie memory-mapped, its passages read), and a load
that loses its generation mid-way starts again from the pointer. Artifacts written before
generations (``manifest.json`` at the top) still load, and their first write migrates them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selfretrieval_integrations.errors import ArtifactError

from .layout import ADAPTER_DIR, MANIFEST_FILE, MODEL_DIR, STORE_DIR, TOKENIZER_DIR, TRIE_DIR
from .lock import HOLDER_FILE, LOCK_FILE, writer_lock

log = logging.getLogger(__name__)

POINTER_FILE = "CURRENT"
GENERATIONS_DIR = "generations"
POINTER_FORMAT = "selfretrieval-artifact-pointer"
RETENTION_S = 60.0
"""Seconds an old generation stays after it stopped being current (beyond the previous one)."""
_LEGACY_ENTRIES = (MANIFEST_FILE, TOKENIZER_DIR, MODEL_DIR, ADAPTER_DIR, TRIE_DIR, STORE_DIR)
_TMP_PREFIX = ".tmp-"


def generation_dir(path: str | Path, number: int) -> Path:
    return Path(path) / GENERATIONS_DIR / f"{number:06d}"


def current_generation(path: str | Path) -> int | None:
    """The number the pointer names, or None for an artifact without generations (or none)."""
    pointer = Path(path) / POINTER_FILE
    try:
        data = json.loads(pointer.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{pointer} is unreadable ({error}): the artifact is damaged") from None
    number = data.get("generation") if isinstance(data, dict) else None
    if data.get("format") != POINTER_FORMAT or not isinstance(number, int):
        raise ArtifactError(f"{pointer} is not a Self-Retrieval generation pointer")
    return number


def resolve(path: str | Path) -> tuple[Path, int | None]:
    """The folder a reader should read (the current generation's) and its number.

    An artifact in the layout before generations is its own folder, with number None.
    """
    path = Path(path)
    number = current_generation(path)
    if number is None:
        return path, None
    folder = generation_dir(path, number)
    if not folder.is_dir():
        raise ArtifactError(f"{path / POINTER_FILE} names generation {number}, which is missing")
    return folder, number


def _existing(path: Path) -> list[int]:
    folder = path / GENERATIONS_DIR
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sync_tree(folder: Path) -> None:
    """Flush what this write created (hard-linked files were flushed when first written)."""
    for item in folder.rglob("*"):
        if item.is_dir() or item.stat().st_nlink == 1:
            _fsync(item)
    _fsync(folder)


def _write_pointer(path: Path, number: int) -> None:
    folder = generation_dir(path, number).relative_to(path).as_posix()
    data = {"format": POINTER_FORMAT, "generation": number, "folder": folder}
    tmp = path / f"{POINTER_FILE}{_TMP_PREFIX}{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path / POINTER_FILE)
    _fsync(path)


def _is_legacy(path: Path) -> bool:
    return (path / MANIFEST_FILE).is_file() and not (path / POINTER_FILE).exists()


def _check_target(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"cannot save to {path}: it exists and is not a folder")
    if not path.is_dir() or (path / POINTER_FILE).exists() or _is_legacy(path):
        return
    ours = {LOCK_FILE, HOLDER_FILE, GENERATIONS_DIR}
    if any(p.name not in ours for p in path.iterdir()):
        raise ArtifactError(
            f"cannot save to {path}: the folder holds other files and is not an artifact; "
            "choose an empty or new folder"
        )


def _stamp_generation(folder: Path, number: int) -> None:
    """Record the generation number in the manifest (not a listed file, so hashes still hold)."""
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ArtifactError(f"the new generation has no {MANIFEST_FILE}; nothing was committed")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["generation"] = number
    with open(manifest_path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")


def remove_stale(path: Path, current: int | None, *, now: float | None = None) -> list[int]:
    """Remove what no reader can need: half-built folders, uncommitted and expired generations.

    Called with the writer lock held. Returns the numbers of the generations removed.
    """
    folder = path / GENERATIONS_DIR
    if not folder.is_dir():
        return []
    for item in folder.iterdir():
        if item.name.startswith(_TMP_PREFIX):
            shutil.rmtree(item, ignore_errors=True)
    for item in path.glob(f"{POINTER_FILE}{_TMP_PREFIX}*"):
        item.unlink(missing_ok=True)
    now = time.time() if now is None else now
    numbers = _existing(path)
    committed = [n for n in numbers if current is not None and n <= current]
    keep = set(committed[-2:])  # the current generation and the one before it
    removed = []
    for i, number in enumerate(numbers):
        if number in keep:
            continue
        if number in committed:
            # Superseded earlier: kept until its successor has been current for a while.
            successor = generation_dir(path, numbers[i + 1]) / MANIFEST_FILE
            try:
                if now - successor.stat().st_mtime <= RETENTION_S:
                    continue
            except OSError:
                continue
        # else complete but never named by the pointer: its writer died between two renames.
        shutil.rmtree(generation_dir(path, number), ignore_errors=True)
        removed.append(number)
    return removed


def _migrate_legacy(path: Path) -> None:
    """Remove the files of the layout before generations, once a generation holds the artifact."""
    for name in _LEGACY_ENTRIES:  # the manifest first: what remains is no longer an artifact
        item = path / name
        if item.is_dir():
            shutil.rmtree(item, ignore_errors=True)
        elif item.exists():
            item.unlink()
    log.warning("migrated %s to the generations layout (artifact format 2)", path)


@contextmanager
def new_generation(
    path: str | Path, operation: str, *, lock_timeout: float | None = None
) -> Iterator[Path]:
    """Yield an empty folder for a complete new generation; commit it if the block succeeds.

    The writer lock is held for the block, so a caller that also reads the current generation
    inside ``writer_lock`` (as every write does) cannot lose another writer's change. On failure
    nothing changes and the folder is removed.
    """
    path = Path(path).resolve()
    _check_target(path)
    with writer_lock(path, operation, timeout=lock_timeout):
        current = current_generation(path)
        remove_stale(path, current)
        existing = _existing(path)
        number = max([current or 0, *existing]) + 1
        tmp = path / GENERATIONS_DIR / f"{_TMP_PREFIX}{number:06d}-{os.getpid()}"
        tmp.mkdir(parents=True)
        try:
            yield tmp
            _stamp_generation(tmp, number)
            _sync_tree(tmp)
            os.replace(tmp, generation_dir(path, number))
            _fsync(path / GENERATIONS_DIR)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        legacy = _is_legacy(path)
        _write_pointer(path, number)
        if legacy:
            _migrate_legacy(path)
        remove_stale(path, number)
