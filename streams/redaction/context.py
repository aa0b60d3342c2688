"""Short numbers that are only secret because of what was said around them.

"123" is a room, a count, a CVV; only a keyword nearby tells. Each rule (``rules``) has
keywords, a window *after* a keyword (every qualifying sequence inside it is redacted: the agent
asks, the caller answers a few words later) and a shorter window *before* it ("123 is my
security code"), used only when nothing qualifying follows, and then only for the nearest
sequence. Windows count words, not characters; number words, fillers and month names do not
count (``numbers.NON_COUNTING``), so redacting them cannot change a window on a second pass.

Every window looks at most 8 words away, so a keyword far from a number never reaches it. A
number two rules claim is one redaction, named after the nearer keyword ("CVV: 123; expiry:
04/27" is a code and an expiry, not two codes).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import NamedTuple

from streams.redaction.numbers import MONTHS, Sequence
from streams.redaction.rules import Rule, is_year
from streams.redaction.tokens import Token

_OTHER, _QUALIFIES, _MARKER = 0, 1, 2


class _Item(NamedTuple):
    first: int
    last: int
    status: int


class Scan(NamedTuple):
    """What every rule reads, computed once per text."""

    text: str
    tokens: list[Token]
    starts: list[int]  # character offset of each token, for bisecting keyword matches
    ranks: list[int]  # numbers.word_ranks
    markers: list[int]  # token indices of earlier redaction markers


class Hit(NamedTuple):
    first: int  # token span
    last: int
    #: Words between the number and the keyword that claimed it. When two rules claim the same
    #: number ("CVV: 123; expiry: 04/27") the nearer keyword names it.
    distance: int


def find(
    rule: Rule, scan: Scan, sequences: list[Sequence], claimed: set[tuple[int, int]]
) -> list[Hit]:
    """What ``rule`` redacts. ``claimed``: spans already redacted as cards; like earlier markers
    they satisfy a window without being redacted again. Linear in keywords and sequences
    (bisects, no window scans)."""
    tokens, ranks = scan.tokens, scan.ranks
    keywords: list[tuple[int, int]] = []  # (first, last) token of each keyword, in text order
    for m in rule.keywords.finditer(scan.text):
        kf = bisect_right(scan.starts, m.start()) - 1
        kl = bisect_right(scan.starts, m.end() - 1) - 1
        if _inside_or_against_marker(tokens, kf, kl, m.start(), m.end()):
            continue
        keywords.append((kf, kl))
    if not keywords:
        return []
    items = _items(rule, scan, sequences, claimed)
    firsts = [it.first for it in items]
    lasts = [it.last for it in items]
    item_ranks = [ranks[it.first] for it in items]
    solved = [0]  # prefix count of items that satisfy a window (qualify or already redacted)
    nearest: list[int] = []  # per item: index of the nearest satisfying item at or before it
    for idx, it in enumerate(items):
        solved.append(solved[-1] + (it.status != _OTHER))
        nearest.append(idx if it.status != _OTHER else (nearest[-1] if nearest else -1))
    hits: dict[int, int] = {}  # item index -> distance to its nearest claiming keyword
    for kf, kl in keywords:
        lo = bisect_right(firsts, kl)
        hi = bisect_right(item_ranks, ranks[kl + 1] + rule.after, lo=lo)
        if solved[hi] > solved[lo]:
            if rule.first_only:
                j = bisect_right(solved, solved[lo]) - 1  # the first satisfying item from lo
                if items[j].status == _QUALIFIES:
                    distance = ranks[items[j].first] - ranks[kl + 1]
                    hits[j] = min(distance, hits.get(j, distance))
            continue
        if not rule.before:
            continue
        back = bisect_left(lasts, kf) - 1
        j = nearest[back] if back >= 0 else -1
        if j < 0 or items[j].status != _QUALIFIES:
            continue
        distance = ranks[kf] - ranks[items[j].last + 1]
        if distance <= rule.before:
            hits[j] = min(distance, hits.get(j, distance))
    if rule.first_only:
        return [Hit(items[i].first, items[i].last, d) for i, d in sorted(hits.items())]
    # After-windows: an item is inside one iff it is inside that of the nearest keyword before it.
    keyword_lasts = [kl for _, kl in keywords]
    for idx, it in enumerate(items):
        k = bisect_left(keyword_lasts, it.first) - 1
        if it.status == _QUALIFIES and k >= 0:
            distance = ranks[it.first] - ranks[keyword_lasts[k] + 1]
            if distance <= rule.after:
                hits[idx] = min(distance, hits.get(idx, distance))
    return [Hit(items[i].first, items[i].last, d) for i, d in sorted(hits.items())]


def _inside_or_against_marker(tokens: list[Token], kf: int, kl: int, start: int, end: int) -> bool:
    """A keyword inside an earlier marker ("[REDACTED:cvv]") is not one; nor is one touching a
    marker: "4532015112830366cvv" has no keyword (no word boundary after the digits), so the
    "[REDACTED:card]cvv" it becomes must have none either."""
    if tokens[kf].kind == "redacted" or tokens[kl].kind == "redacted":
        return True
    before = kf > 0 and tokens[kf - 1].kind == "redacted" and tokens[kf].start == start
    after = kl + 1 < len(tokens) and tokens[kl + 1].kind == "redacted" and tokens[kl].end == end
    return before or after


def _items(
    rule: Rule, scan: Scan, sequences: list[Sequence], claimed: set[tuple[int, int]]
) -> list[_Item]:
    items = [_Item(i, i, _MARKER) for i in scan.markers]
    for seq in sequences:
        first, status = seq.first, _OTHER
        if (seq.first, seq.last) in claimed:
            status = _MARKER
        elif seq.glued:
            pass
        elif rule.qualifies(seq.digits):
            status = _QUALIFIES
        if rule.months and status != _MARKER and not seq.glued:
            month = _month_before(scan.tokens, seq.first)
            if month is not None and (status == _QUALIFIES or is_year(seq.digits)):
                first, status = month, _QUALIFIES
        items.append(_Item(first, seq.last, status))
    items.sort()
    return items


def _month_before(tokens: list[Token], i: int) -> int | None:
    """Index of a month name just before token ``i`` (across spaces and one comma)."""
    j, commas = i - 1, 0
    while j >= 0 and (tokens[j].kind == "space" or (tokens[j].text == "," and not commas)):
        commas += tokens[j].text == ","
        j -= 1
    if j < i - 1 and j >= 0 and tokens[j].low in MONTHS:
        return j
    return None
