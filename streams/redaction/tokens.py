"""Tokens that tile the text exactly, so a redaction replaces a token range and leaves every
other character as it was.

A redaction marker left by an earlier pass is one opaque token: it is never read as words (its
"cvv" is not a keyword again), which is what makes redaction idempotent.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal, NamedTuple

TokenKind = Literal["redacted", "num", "word", "space", "punct"]

REDACTION = re.compile(r"\[REDACTED:[a-z_]+\]")

# One alternative per kind, each a single linear loop: no nested quantifiers, no backtracking.
# ``\d`` is deliberate: a card written in another script's digits is still a card.
_TOKEN = re.compile(
    r"(?P<redacted>\[REDACTED:[a-z_]+\])"
    r"|(?P<num>\d+)"
    r"|(?P<word>[^\W\d_]+(?:['\u2019][^\W\d_]+)*)"
    r"|(?P<space>\s+)"
    r"|(?P<punct>.)",
    re.DOTALL,
)


class Token(NamedTuple):
    kind: TokenKind
    start: int
    end: int
    text: str
    #: Lower-cased text of a word (empty for other kinds): vocabularies are matched on this.
    low: str


def tokenize(text: str) -> list[Token]:
    tokens = []
    for m in _TOKEN.finditer(text):
        kind: TokenKind = m.lastgroup  # type: ignore[assignment]
        word = m.group()
        tokens.append(Token(kind, m.start(), m.end(), word, word.lower() if kind == "word" else ""))
    return tokens


def ascii_digits(run: str) -> str:
    """``"٤٥"`` -> ``"45"``: Luhn and the length rules work on ASCII."""
    if run.isascii():
        return run
    return "".join(str(unicodedata.decimal(ch)) for ch in run)
