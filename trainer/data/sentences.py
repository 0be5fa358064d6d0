"""Sentences of a passage: the pseudo-queries of its indexing examples.

Offline and deterministic (regular expressions only), so a corpus always gives the same examples.
"""

from __future__ import annotations

import re

_CLOSERS = "\"'\u201d\u2019\u00bb)\\]}\u300d\u300f\uff09\u3011\u3015\u300b"
_OPENERS = "\"'\u201c\u2018\u00ab([{"
# A sentence end: CJK full stops need no space after them; Latin ones need whitespace after.
_END_RE = re.compile(
    f"[\u3002\uff01\uff1f\uff61\uff0e]+[{_CLOSERS}]*|[.!?\u2026]+[{_CLOSERS}]*(?= )"
)
_CJK_STOPS = frozenset("\u3002\uff01\uff1f\uff61\uff0e")
_LIST_MARKER_RE = re.compile(r"^(?:[-*\u2022\u25aa\u2013\u2014]\s|\(?\w{1,3}[.)]\s)")
_LOWER_DOTTED_RE = re.compile(r"^(?:[a-z]\.)+[a-z]$")  # e.g / i.e / a.m (last dot is the end)
_UPPER_DOTTED_RE = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")  # U.S / Ph.D / D.C
_ROMAN_RE = re.compile(r"^[IVXLCDM]+$|^[ivxlcdm]+$")
_HAS_WORD_RE = re.compile(r"\w")
_JOINS_NEXT_LINE = tuple(",;-\u2013\u2014(/&")

#: Words that a period follows without ending the sentence (case-sensitive).
_NON_FINAL_ABBREVIATIONS = frozenset(
    """
    Mr Mrs Ms Mx Dr Prof Sr Sra Srta St Ste Mt Ft Gen Gov Sen Rep Pres Rev Hon Capt Cpt Col Lt
    Sgt Maj Cmdr Adm Brig Fr Msgr Supt Insp Det Pvt Cpl No Nos no nos Fig Figs fig figs Vol Vols
    vol vols Ch ch Eq eq Eqs Art art Sec sec Sect Para para Ref ref Refs pp p ed eds Ed Eds vs v
    cf approx ca viz al Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec Mon Tue Tues Wed Thu
    Thur Thurs Fri Sat Sun Op op Nr nr Dept dept Univ Assn Ave Blvd Rd
    """.split()  # noqa: SIM905 - a word list reads better as text
)

#: Capitalised words that commonly start a sentence: after an initial ("John F. Kennedy") or a
#: dotted acronym ("the U.S. Army"), a period ends the sentence only before one of these.
_SENTENCE_STARTERS = frozenset(
    """
    A An The This That These Those There Here It Its He She His Her They Their Them We Our I You
    Your In On At As By For From To Of With Without After Before When While Where If Since
    Although Though Because But And Or So Yet Then Thus However Therefore Moreover Also Both Each
    Every All Some Many Most Several Such Other Another One Two Three Today Later During Despite
    Following Under Over Between Among Nevertheless Meanwhile Instead Finally First Later Since
    What Who Which How Why Unlike Like Not No Only Even
    """.split()  # noqa: SIM905 - a word list reads better as text
)


def _blocks(text: str) -> list[str]:
    """Lines of ``text`` grouped into blocks that sentences can not cross.

    A blank line always ends a block. A single line break ends one too (headings, list items,
    table rows, verses), except when the next line starts with a lowercase letter or the line
    ends with ``, ; - ( / &``: that is a hard-wrapped sentence and the lines are joined.
    """
    blocks: list[str] = []
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if current:
                blocks.append(" ".join(current))
                current = []
            continue
        wrapped = (
            current
            and not _LIST_MARKER_RE.match(line)
            and (line[0].islower() or current[-1].endswith(_JOINS_NEXT_LINE))
        )
        if current and not wrapped:
            blocks.append(" ".join(current))
            current = []
        current.append(line)
    if current:
        blocks.append(" ".join(current))
    return blocks


def _ends_sentence(block: str, sentence_start: int, match: re.Match[str]) -> bool:
    punct = match.group()
    if punct[0] in _CJK_STOPS:
        return True
    after = block[match.end() :].lstrip()
    if not after or after[0].islower():
        return not after  # "Yahoo! is", "approx. five", unknown abbreviations: no end
    terminator = punct.rstrip(_CLOSERS)
    if terminator != ".":
        return True  # ! ? ... and ellipses before a capital, a digit or a quote
    before = block[sentence_start : match.start()]
    word = before.rsplit(" ", 1)[-1].lstrip(_OPENERS)
    if word in _NON_FINAL_ABBREVIATIONS or _LOWER_DOTTED_RE.match(word):
        return False  # "Dr. Smith", "e.g. Paris"
    next_word = after.split(" ", 1)[0].strip(_OPENERS + _CLOSERS + ",;:")
    if _UPPER_DOTTED_RE.match(word) or (len(word) == 1 and word.isupper()):
        return next_word in _SENTENCE_STARTERS  # "the U.S. Army" / "the U.S. The"; initials
    # A list marker at the start ("1. Preheat", "a. First", "IV. Results") ends nothing.
    at_start = word == before.strip()
    return not (at_start and (word.isdigit() or len(word) == 1 or _ROMAN_RE.match(word)))


def _split_block(block: str) -> list[str]:
    block = " ".join(block.split())
    sentences: list[str] = []
    start = 0
    for match in _END_RE.finditer(block):
        if match.end() <= start or not _ends_sentence(block, start, match):
            continue
        sentences.append(block[start : match.end()].strip())
        start = match.end()
    sentences.append(block[start:].strip())
    return sentences


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, offline and deterministically (regular expressions only).

    Inner whitespace of each sentence is collapsed to single spaces; fragments without any letter
    or digit are dropped. Handled:

    - ``.``, ``!``, ``?`` and ellipses followed by whitespace, with closing quotes or brackets
      kept on the sentence they close (``He said "Stop." Then ...``);
    - CJK full stops ``。！？`` (also full-width ``．`` and half-width ``｡``), which need no space;
    - decimals, versions, URLs and e-mail addresses (no space after the period, so no end);
    - common abbreviations that precede a name or a number (``Dr.``, ``Mr.``, ``St.``, ``No.``,
      ``Fig.``, ``vs.``, ``approx.``, months, ...) and lowercase dotted ones (``e.g.``, ``i.e.``,
      ``a.m.``);
    - initials and dotted acronyms (``John F. Kennedy``, ``the U.S. Army``): they end a sentence
      only when a common sentence-starting word follows (``... in the U.S. The ...``);
    - a period followed by a lowercase word never ends a sentence (``approx. five``);
    - list markers at the start of a line (``1. ``, ``a) ``, ``- ``);
    - line breaks: a blank line always ends a sentence, a single line break too unless the text
      is hard-wrapped (next line starts in lowercase, or the line ends with ``,;-(/&``).

    Limits: it is a heuristic, not a trained segmenter (like NLTK's punkt, which would need a
    download). Unknown abbreviations followed by a capitalised name split (``Acme Corp. Chairman``
    gives two sentences); a sentence ending in an initial or acronym before a word not in the
    starter list is merged with the next one (``... vitamin C. Lemons ...``); sentences starting
    with a lowercase letter (``... end. iPhones ...``) merge with the previous one; Thai, Lao,
    Khmer and other scripts without sentence punctuation come back as one sentence per line.
    """
    if not isinstance(text, str):
        raise TypeError(f"split_sentences takes a str, got {type(text).__name__}")
    sentences: list[str] = []
    for block in _blocks(text):
        sentences.extend(s for s in _split_block(block) if _HAS_WORD_RE.search(s))
    return sentences
