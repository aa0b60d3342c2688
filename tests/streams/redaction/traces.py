"""Independent of the code under test: what digits does a text still say, in any form?"""

from __future__ import annotations

import re

from streams.redaction.tokens import REDACTION

_WORD_DIGITS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
    "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
    "twenty": "2", "thirty": "3", "forty": "4", "fifty": "5", "sixty": "6", "seventy": "7",
    "eighty": "8", "ninety": "9", "double": "", "triple": "",
}  # fmt: skip
_PIECE = re.compile(r"\d|[a-z]+", re.IGNORECASE)


def digit_runs(text: str) -> list[str]:
    """Runs of digits as a reader would hear them; a non-number word ends a run. Tens words give
    their first digit only, so "forty-five" reads "45" like "four five" does."""
    runs, run = [], ""
    for piece in _PIECE.findall(REDACTION.sub(" ", text)):
        if piece.isdigit():
            run += str(int(piece))
        elif piece.lower() in _WORD_DIGITS:
            run += _WORD_DIGITS[piece.lower()]
        elif run:
            runs.append(run)
            run = ""
    return [*runs, run] if run else runs


def leaked(secret: str, text: str, width: int = 4) -> list[str]:
    """The ``width``-digit slices of ``secret`` that a digit run of ``text`` still contains."""
    runs = digit_runs(text)
    slices = {secret[i : i + width] for i in range(len(secret) - width + 1)}
    return sorted(s for s in slices if any(s in run for run in runs))


def literals_kept(original: str, redacted: str) -> bool:
    """Every character outside the markers is the original's, in order, with a non-empty gap
    where each marker stands (byte-for-byte preservation, checked from outside)."""
    pieces = REDACTION.split(redacted)
    if not original.startswith(pieces[0]) or not original.endswith(pieces[-1]):
        return False
    cursor = len(pieces[0])
    for piece in pieces[1:-1]:
        found = original.find(piece, cursor + 1)
        if found < 0:
            return False
        cursor = found + len(piece)
    return len(pieces) == 1 or cursor < len(original) - len(pieces[-1])
