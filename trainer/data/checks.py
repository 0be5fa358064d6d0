"""Checks that several example builders share: passage indices, and the short listing of bad
values that their messages show."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selfretrieval_integrations.corpus import Corpus
from selfretrieval_integrations.errors import CorpusError

_MAX_LISTED = 5


def listed(items: Sequence[object]) -> str:
    """The first few ``items`` and how many more, for an error message."""
    shown = ", ".join(repr(item) for item in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def checked_passages(passages: Sequence[int] | None, corpus: Corpus) -> list[int]:
    """Distinct passage indices of ``corpus`` in the order given (all of them for None)."""
    if passages is None:
        return list(range(len(corpus)))
    if isinstance(passages, (str, bytes)):
        raise CorpusError(f"passages must be a sequence of passage indices, got {passages!r}")
    chosen: list[int] = []
    bad: list[object] = []
    for value in passages:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or not 0 <= value < len(corpus)
        ):
            bad.append(value)
        else:
            chosen.append(int(value))
    if bad:
        raise CorpusError(
            f"passages holds {len(bad)} invalid passage indices ({listed(bad)}); give ints in "
            f"[0, {len(corpus)}) (corpus.index_of(passage_id) converts an id)"
        )
    return list(dict.fromkeys(chosen))
