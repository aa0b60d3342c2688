"""Digits as people say and write them: groups of digits, and the runs ("sequences") they form.

A *group* is what one speaker unit produced: a written run ``4532``, a word ``four``, a pair
``forty-five``, ``double four``, ``four hundred and twelve``. A *sequence* is a maximal run of
groups separated only by what people put between digits when reading a number out: spaces,
``- . , /``, one filler (``uh``, ``um``, ``dash``, ...). Detectors judge whole sequences and
redact whole sequences, so a redaction never leaves half a number behind, and a second pass sees
exactly the same sequences minus the redacted ones.

English only. ``and`` is deliberately *not* a separator (only inside ``hundred and five``):
"two kids and three dogs" must not become a digit string, and the rare card read out with
"and" between blocks is the accepted miss. ``thousand`` and larger are not supported: they
speak amounts, never card or code digits.
"""

from __future__ import annotations

from typing import NamedTuple

from streams.redaction.tokens import Token, ascii_digits

UNITS = {
    **{"zero": 0, "oh": 0, "o": 0, "nought": 0, "naught": 0},
    **{"one": 1, "two": 2, "three": 3, "four": 4, "five": 5},
    **{"six": 6, "seven": 7, "eight": 8, "nine": 9},
}
TEENS = {
    **{"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15},
    **{"sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19},
}
TENS = {
    **{"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50},
    **{"sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90},
}
MULTIPLIERS = {"double": 2, "triple": 3, "treble": 3}
KEYPAD_WORDS = {"star": "*", "pound": "#", "hash": "#"}
KEYPAD_CHARS = frozenset("*#")
#: Words a speaker drops between digits without meaning a new number.
FILLERS = frozenset(
    {"uh", "um", "umm", "uhm", "er", "erm", "ah", "hmm", "mm", "dash", "hyphen", "slash"}
)
HYPHENS = frozenset("-\u2010\u2011\u2012\u2013")
SEPARATOR_CHARS = HYPHENS | frozenset(".,/\u2014\u2212")
MONTHS = frozenset(
    {"january", "february", "march", "april", "may", "june", "july", "august", "september"}
    | {"october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug"}
    | {"sep", "sept", "oct", "nov", "dec"}
)
#: Words that never count towards a context window's distance. Everything a redaction can remove
#: is in here, so removing it cannot move a number into or out of a window on a second pass.
NON_COUNTING = (
    (UNITS.keys() | TEENS.keys() | TENS.keys() | MULTIPLIERS.keys() | KEYPAD_WORDS.keys())
    | FILLERS
    | MONTHS
    | {"hundred", "a", "and"}
)
NUMBER_WORDS = frozenset(UNITS.keys() | TEENS.keys() | TENS.keys())

_MAX_GAP_CHARS = 12
_MAX_GAP_PUNCT = 2


class Group(NamedTuple):
    first: int  # token index
    last: int  # token index, inclusive
    digits: str  # ASCII digits, or "*" / "#" for a keypad symbol
    #: A written run touching letters ("221B", "1st", "A320"): part of an identifier, so it is
    #: never joined with its neighbours and never taken as a code in context.
    glued: bool = False


class Sequence(NamedTuple):
    groups: tuple[Group, ...]
    digits: str

    @property
    def first(self) -> int:
        return self.groups[0].first

    @property
    def last(self) -> int:
        return self.groups[-1].last

    @property
    def glued(self) -> bool:
        return self.groups[0].glued


def parse_groups(tokens: list[Token]) -> list[Group]:
    groups: list[Group] = []
    n = len(tokens)
    i = 0
    while i < n:
        tok = tokens[i]
        if tok.kind == "num":
            glued = (i > 0 and tokens[i - 1].kind in ("word", "redacted")) or (
                i + 1 < n and tokens[i + 1].kind in ("word", "redacted")
            )
            groups.append(Group(i, i, ascii_digits(tok.text), glued))
        elif tok.kind == "punct" and tok.text in KEYPAD_CHARS:
            groups.append(Group(i, i, tok.text))
        elif tok.kind == "word":
            spoken = _spoken(tokens, i)
            if spoken is not None:
                groups.append(spoken)
                i = spoken.last
            elif tok.low in KEYPAD_WORDS:
                groups.append(Group(i, i, KEYPAD_WORDS[tok.low]))
        i += 1
    return groups


def build_sequences(tokens: list[Token], groups: list[Group], *, keypad: bool) -> list[Sequence]:
    """Join groups into sequences; with ``keypad`` ``*`` and ``#`` are digits too (DTMF)."""
    out: list[Sequence] = []
    run: list[Group] = []

    def flush() -> None:
        if run:
            out.append(Sequence(tuple(run), "".join(g.digits for g in run)))
            run.clear()

    for group in groups:
        if group.digits in KEYPAD_CHARS and not keypad:
            flush()
        elif group.glued:
            flush()
            out.append(Sequence((group,), group.digits))
        else:
            if run and not _separator_only(tokens, run[-1].last + 1, group.first):
                flush()
            run.append(group)
    flush()
    return out


def word_ranks(tokens: list[Token]) -> list[int]:
    """``ranks[i]`` = counting words before token ``i``; ``ranks[b] - ranks[a]`` is a distance."""
    ranks = [0]
    for tok in tokens:
        counts = tok.kind == "word" and tok.low not in NON_COUNTING
        ranks.append(ranks[-1] + counts)
    return ranks


def _separator_only(tokens: list[Token], a: int, b: int) -> bool:
    punct = fillers = chars = 0
    for tok in tokens[a:b] if b - a <= _MAX_GAP_CHARS else ():
        chars += tok.end - tok.start
        if tok.kind == "space":
            pass
        elif tok.kind == "punct" and tok.text in SEPARATOR_CHARS:
            punct += 1
        elif tok.kind == "word" and tok.low in FILLERS:
            fillers += 1
        else:
            return False
        if chars > _MAX_GAP_CHARS or punct > _MAX_GAP_PUNCT or fillers > 1:
            return False
    return b - a <= _MAX_GAP_CHARS


def _spoken(tokens: list[Token], i: int) -> Group | None:
    low = tokens[i].low
    if low in MULTIPLIERS:
        j = _next(tokens, i)
        if j is None:
            return None
        digit = _single_digit(tokens[j])
        return None if digit is None else Group(i, j, digit * MULTIPLIERS[low])
    if low == "a":
        j = _next(tokens, i)
        return _hundreds(tokens, i, j, 1) if j is not None and tokens[j].low == "hundred" else None
    chunk = _chunk(tokens, i)
    if chunk is None:
        return None
    value, last = chunk
    if value:
        j = _next(tokens, last)
        if j is not None and tokens[j].low == "hundred":
            return _hundreds(tokens, i, j, value)
    return Group(i, last, str(value))


def _chunk(tokens: list[Token], i: int) -> tuple[int, int] | None:
    """A number below 100 spoken as one unit: ``oh``, ``seven``, ``fifteen``, ``forty-five``."""
    low = tokens[i].low
    if low in UNITS or low in TEENS:
        return UNITS.get(low, TEENS.get(low, 0)), i
    if low in TENS:
        j = _next(tokens, i)
        if j is not None and UNITS.get(tokens[j].low, 0) > 0:
            return TENS[low] + UNITS[tokens[j].low], j
        return TENS[low], i
    return None


def _hundreds(tokens: list[Token], first: int, hundred: int, value: int) -> Group:
    total, last = value * 100, hundred
    j = _next(tokens, hundred)
    if j is not None and tokens[j].low == "and":
        j = _next(tokens, j)
    tail = _chunk(tokens, j) if j is not None else None
    if tail is not None and tail[0]:
        total, last = total + tail[0], tail[1]
    return Group(first, last, str(total))


def _next(tokens: list[Token], i: int) -> int | None:
    """The word or number right after token ``i`` across one space or one hyphen, if any."""
    j = i + 1
    if j < len(tokens) and (
        (tokens[j].kind == "space" and tokens[j].end - tokens[j].start <= 2)
        or tokens[j].text in HYPHENS
    ):
        j += 1
        if j < len(tokens) and tokens[j].kind in ("word", "num"):
            return j
    return None


def _single_digit(tok: Token) -> str | None:
    if tok.kind == "num" and len(tok.text) == 1:
        return ascii_digits(tok.text)
    value = UNITS.get(tok.low)
    return None if value is None else str(value)
