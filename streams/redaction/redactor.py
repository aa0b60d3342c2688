"""``redact``: the one entry point. Pure: text in, text and counts out, no I/O, no state."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

from streams.redaction import cards, context
from streams.redaction.kinds import PRIORITY, REPLACEMENT, Kind
from streams.redaction.numbers import NUMBER_WORDS, build_sequences, parse_groups, word_ranks
from streams.redaction.rules import RULES
from streams.redaction.tokens import tokenize

#: Most segments say no number at all; they skip tokenizing. Every group that can be redacted
#: contains a digit, a number word or "hundred" ("double" needs a digit word after it; ``*`` and
#: ``#`` alone redact nothing), so text without any is returned as it came.
_MAY_HAVE_DIGITS = re.compile(
    r"\d|\b(?:hundred|" + "|".join(sorted(NUMBER_WORDS)) + r")\b", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Redacted:
    """The redacted text and what was removed, by kind only: the values are gone for good, so
    nothing downstream (metadata, logs, metrics) can leak them."""

    text: str
    count: int = 0
    #: One kind per redaction, in text order.
    kinds: tuple[Kind, ...] = ()

    def __post_init__(self) -> None:
        if self.count != len(self.kinds):
            raise ValueError("count must equal the number of kinds")

    def by_kind(self) -> dict[Kind, int]:
        return dict(Counter(self.kinds))


def redact(text: str) -> Redacted:
    """Replace card numbers, security codes, PINs, expiry dates and keyed-in (DTMF) digits with
    ``[REDACTED:<kind>]``; every other character is kept as it was. Idempotent."""
    if not _MAY_HAVE_DIGITS.search(text):
        return Redacted(text)
    tokens = tokenize(text)
    groups = parse_groups(tokens)
    if not groups:
        return Redacted(text)
    plain = build_sequences(tokens, groups, keypad=False)
    spans: list[_Span] = []
    for seq in plain:
        after_plus = seq.first > 0 and tokens[seq.first - 1].text == "+"
        if cards.is_card(seq, after_plus=after_plus):
            spans.append(_Span(seq.first, seq.last, (-1, PRIORITY["card"]), "card"))
    claimed = {(span.first, span.last) for span in spans}
    scan = context.Scan(
        text,
        tokens,
        [tok.start for tok in tokens],
        word_ranks(tokens),
        [i for i, tok in enumerate(tokens) if tok.kind == "redacted"],
    )
    keypad = build_sequences(tokens, groups, keypad=True)
    for rule in RULES:
        sequences = keypad if rule.keypad else plain
        found = context.find(rule, scan, sequences, claimed)
        spans.extend(
            _Span(h.first, h.last, (h.distance, PRIORITY[rule.kind]), rule.kind) for h in found
        )
    if not spans:
        return Redacted(text)
    out: list[str] = []
    kinds: list[Kind] = []
    cursor = 0
    for span in _merge(spans):
        out += (text[cursor : tokens[span.first].start], REPLACEMENT[span.kind])
        kinds.append(span.kind)
        cursor = tokens[span.last].end
    out.append(text[cursor:])
    return Redacted("".join(out), len(kinds), tuple(kinds))


class _Span(NamedTuple):
    first: int  # token span
    last: int
    #: Lower wins a merge: a card always (-1), else the nearer keyword, then ``PRIORITY``.
    rank: tuple[int, int]
    kind: Kind


def _merge(spans: list[_Span]) -> list[_Span]:
    """Overlapping claims become one redaction of their union, named by the best-ranked claim."""
    merged: list[_Span] = []
    for span in sorted(spans):
        if merged and span.first <= merged[-1].last:
            prev = merged[-1]
            best = span if span.rank < prev.rank else prev
            merged[-1] = _Span(prev.first, max(prev.last, span.last), best.rank, best.kind)
        else:
            merged.append(span)
    return merged
