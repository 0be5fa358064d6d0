"""One writer at a time per artifact: an exclusive file lock around every write.

The lock is ``filelock``'s (an OS lock, ``flock`` on Unix), so the kernel releases it when its
holder dies: a writer killed mid-write never leaves a lock that blocks the next one. It is
reentrant within a thread, so a write that calls another (``add_documents`` saving through
``save_pretrained``) takes it once. Beside it, a small JSON file names the current holder, so a
writer that gives up can say who it waited for.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selfretrieval_integrations.errors import ArtifactError

LOCK_FILE = ".write.lock"
HOLDER_FILE = ".write.lock.holder.json"
DEFAULT_TIMEOUT_S = 300.0
"""How long a writer waits for another to finish (a training run can hold the lock for long)."""

_held = threading.local()


def _depths() -> dict[str, int]:
    if not hasattr(_held, "depths"):
        _held.depths = {}
    return _held.depths


def _holder(folder: Path) -> str:
    try:
        info = json.loads((folder / HOLDER_FILE).read_text(encoding="utf-8"))
        return (
            f"pid {info.get('pid')} on {info.get('host')} ({info.get('operation')}, "
            f"since {info.get('since')})"
        )
    except (OSError, ValueError):
        return "another writer"


@contextmanager
def writer_lock(
    path: str | Path, operation: str, *, timeout: float | None = None
) -> Iterator[None]:
    """Hold the artifact's write lock for the block; waits up to ``timeout`` seconds.

    Raises ``ArtifactError`` naming the holder when the wait times out.
    """
    from filelock import FileLock, Timeout

    folder = Path(path).resolve()
    key = str(folder)
    depths = _depths()
    if depths.get(key):
        depths[key] += 1
        try:
            yield
        finally:
            depths[key] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    wait = DEFAULT_TIMEOUT_S if timeout is None else timeout
    lock = FileLock(folder / LOCK_FILE, timeout=wait)
    try:
        lock.acquire()
    except Timeout:
        raise ArtifactError(
            f"{folder} is locked by {_holder(folder)}; gave up after {wait:g} s. Wait for it to "
            "finish (or pass a longer lock timeout)"
        ) from None
    depths[key] = 1
    try:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "operation": operation,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (folder / HOLDER_FILE).write_text(json.dumps(holder) + "\n", encoding="utf-8")
        yield
    finally:
        depths.pop(key, None)
        lock.release()
