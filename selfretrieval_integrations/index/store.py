"""The passage store of an artifact: JSON lines plus a memory-mapped offset table.

Retrieval returns passage *indices* from the trie; the store turns them into passages. Reading is
lazy (one ``seek`` per passage through ``passages.offsets.npy``) so a million-passage corpus does
not have to be parsed to answer a query. Only JSON is read: nothing is ever unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from selfretrieval_integrations.corpus import Passage
from selfretrieval_integrations.errors import ArtifactError, CorpusError

PASSAGES_FILE = "passages.jsonl"
OFFSETS_FILE = "passages.offsets.npy"


class PassageStore:
    """Passages by index: in memory (a list) or lazily from a saved folder."""

    def __init__(self, passages: Sequence[Passage] | None = None) -> None:
        self._passages: list[Passage] | None = list(passages) if passages is not None else None
        self._path: Path | None = None
        self._offsets: np.ndarray | None = None
        self._ids: dict[str, int] | None = None
        self._cache: dict[int, Passage] = {}

    @classmethod
    def load(cls, folder: str | Path) -> PassageStore:
        folder = Path(folder)
        path, offsets_path = folder / PASSAGES_FILE, folder / OFFSETS_FILE
        for required in (path, offsets_path):
            if not required.is_file():
                raise ArtifactError(f"passage store file is missing: {required}")
        store = cls()
        store._path = path
        try:
            store._offsets = np.load(offsets_path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            raise ArtifactError(f"passage offsets file is corrupted: {offsets_path}") from error
        if store._offsets.ndim != 1 or int(store._offsets[-1]) != path.stat().st_size:
            raise ArtifactError(
                f"{path} does not match {offsets_path} (size {path.stat().st_size} bytes, "
                "offsets disagree): the artifact is corrupted, save it again"
            )
        return store

    def save(self, folder: str | Path) -> None:
        """Write one ``Passage.to_dict`` object per line, as ``Corpus.to_jsonl`` does, and the
        byte offset of every line (what makes reading one passage a single ``seek``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        offsets = [0]
        with open(folder / PASSAGES_FILE, "wb") as handle:
            for passage in self:
                line = json.dumps(passage.to_dict(), ensure_ascii=False) + "\n"
                data = line.encode("utf-8")
                handle.write(data)
                offsets.append(offsets[-1] + len(data))
        np.save(folder / OFFSETS_FILE, np.asarray(offsets, dtype=np.int64), allow_pickle=False)

    def __len__(self) -> int:
        if self._passages is not None:
            return len(self._passages)
        assert self._offsets is not None
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> Passage:
        if self._passages is not None:
            return self._passages[index]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"passage index {index} out of range 0..{len(self) - 1}")
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        assert self._offsets is not None and self._path is not None
        start, end = int(self._offsets[index]), int(self._offsets[index + 1])
        with open(self._path, "rb") as handle:
            handle.seek(start)
            raw = handle.read(end - start)
        try:
            passage = Passage.from_mapping(json.loads(raw))
        except (json.JSONDecodeError, CorpusError) as error:
            raise ArtifactError(f"passage {index} in {self._path} is corrupted: {error}") from error
        if len(self._cache) < 65536:
            self._cache[index] = passage
        return passage

    def __iter__(self) -> Iterator[Passage]:
        if self._passages is not None:
            yield from self._passages
            return
        assert self._path is not None
        with open(self._path, encoding="utf-8") as handle:
            for line in handle:
                yield Passage.from_mapping(json.loads(line))

    def index_of(self, passage_id: str) -> int:
        """Index of a passage id (builds the id table on first use)."""
        if self._ids is None:
            self._ids = {p.id: i for i, p in enumerate(self)}
        try:
            return self._ids[passage_id]
        except KeyError:
            raise KeyError(f"unknown passage id {passage_id!r}") from None
