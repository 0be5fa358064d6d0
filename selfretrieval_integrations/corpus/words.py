"""What a *word* is, in the one definition that chunking, training data and self-assessment share.

A word is a run of non-space characters, except that each CJK character counts as one word (those
scripts do not use spaces) and a run longer than ``MAX_WORD_CHARS`` characters counts as one word
per ``MAX_WORD_CHARS`` characters, so text without spaces (code, base64, Thai) still has bounded
words. Cuts never split a character from its combining marks or an emoji sequence.
"""

from __future__ import annotations

import itertools
import re
import unicodedata

#: A run of non-space characters counts as one word per this many characters.
MAX_WORD_CHARS = 20

_CJK_RANGES = (
    "\u3001-\u303f"  # CJK punctuation (\u3000, the ideographic space, is whitespace)
    "\u3040-\u30ff"  # hiragana, katakana
    "\u31f0-\u31ff"
    "\u3400-\u4dbf"
    "\u4e00-\u9fff"
    "\uf900-\ufaff"
    "\uff01-\uff9f"  # full-width forms, half-width katakana
    "\U00020000-\U0003134f"
)
_MARKS = "\u0300-\u036f\u3099\u309a\ufe00-\ufe0f\u200d"
_WORD_RE = re.compile(f"[{_CJK_RANGES}][{_MARKS}]*|[^\\s{_CJK_RANGES}]+")


def continues_cluster(text: str, pos: int) -> bool:
    """True when a cut before ``text[pos]`` would split a character from its marks or an emoji."""
    ch, prev = text[pos], text[pos - 1]
    if ch == "\u200d" or prev == "\u200d" or "\U0001f3fb" <= ch <= "\U0001f3ff":
        return True
    if "\U0001f1e6" <= ch <= "\U0001f1ff" and "\U0001f1e6" <= prev <= "\U0001f1ff":
        return True
    return unicodedata.category(ch) in ("Mn", "Mc", "Me")


def cut_points(text: str, start: int, end: int, step: int) -> list[int]:
    """Cut positions in ``text[start:end]`` about every ``step`` characters, never in a cluster."""
    cuts = [start]
    pos = start + step
    while pos < end:
        while pos < end and continues_cluster(text, pos):
            pos += 1
        if pos >= end:
            break
        cuts.append(pos)
        pos += step
    cuts.append(end)
    return cuts


def word_spans(text: str) -> list[tuple[int, int]]:
    """Word spans, in order; a fast path keeps ordinary text cheap."""
    spans: list[tuple[int, int]] = []
    for match in _WORD_RE.finditer(text):
        start, end = match.span()
        if end - start <= MAX_WORD_CHARS:
            spans.append((start, end))
            continue
        cuts = cut_points(text, start, end, MAX_WORD_CHARS)
        spans.extend(itertools.pairwise(cuts))
    return spans


def count_words(text: str) -> int:
    """The number of words in ``text``."""
    return len(word_spans(text))


def cut_words(text: str, limit: int) -> str:
    """The first ``limit`` words of ``text``, verbatim (``text`` itself when it is shorter)."""
    spans = word_spans(text)
    return text if len(spans) <= limit else text[: spans[limit - 1][1]]
