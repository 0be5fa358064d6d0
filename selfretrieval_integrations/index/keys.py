"""The token ids every passage's trie key was built from, kept so that a delete need not tokenize.

A delete rebuilds the trie over the passages that remain; tokenizing them again is most of its
cost on a large corpus. With these arrays saved beside the trie, the remaining keys are a slice of
what is already on disk, and the trie built from them is the one a fresh tokenization gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfretrieval_integrations.errors import ArtifactError

from .trie import PassageTrie

_FILES = ("tokens", "offsets", "title_lengths")


@dataclass(frozen=True)
class PassageKeys:
    """Key ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``; its first ``title_lengths[i]`` ids
    are the title."""

    tokens: np.ndarray
    offsets: np.ndarray
    title_lengths: np.ndarray

    @classmethod
    def from_keys(cls, keys: Sequence[Sequence[int]], title_lengths: Sequence[int]) -> PassageKeys:
        lengths = np.fromiter((len(k) for k in keys), dtype=np.int64, count=len(keys))
        offsets = np.zeros(len(keys) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.fromiter((t for k in keys for t in k), dtype=np.uint32, count=int(offsets[-1]))
        return cls(tokens, offsets, np.asarray(title_lengths, dtype=np.int32))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def subset(self, indices: Sequence[int] | np.ndarray) -> PassageKeys:
        """The keys of ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        starts, ends = self.offsets[indices], self.offsets[indices + 1]
        lengths = ends - starts
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return PassageKeys(self.tokens[gather], offsets, self.title_lengths[indices])

    def trie(self, *, show_progress: bool = False) -> PassageTrie:
        return PassageTrie.build_flat(
            self.tokens, self.offsets, self.title_lengths, show_progress=show_progress
        )

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in _FILES:
            np.save(folder / f"{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, folder: str | Path) -> PassageKeys | None:
        """The saved keys, or None where a generation has none (written before they were kept)."""
        folder = Path(folder)
        if not all((folder / f"{name}.npy").is_file() for name in _FILES):
            return None
        try:
            keys = cls(*(np.load(folder / f"{name}.npy") for name in _FILES))
        except (OSError, ValueError) as error:
            raise ArtifactError(f"the passage keys in {folder} are unreadable: {error}") from error
        if keys.offsets[-1] != len(keys.tokens) or len(keys.title_lengths) != len(keys):
            raise ArtifactError(f"the passage keys in {folder} do not fit together")
        return keys
