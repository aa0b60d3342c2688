"""Is this sequence a payment card number (PAN)?

Two tests, both needing Luhn, the checksum every PAN carries and 90% of other numbers fail:

* **Whole sequence**: 13-19 digits, first digit not 0. No brand check, because the point is
  catching cards: UATP (1), fleet (7), RuPay (8) and national schemes (9) are cards too.
  Excluded: a leading 0 (no card starts with 0; national phone numbers and ``00`` dialling
  prefixes do), and a ``+``-prefixed sequence of at most 15 digits (E.164's maximum: a phone
  number; cards are never written with ``+``).
* **Window**: the sequence is longer or fails, but a run of *whole groups* inside it is a PAN of
  a PCI brand (first digit 2-6) with a length that brand issues. This catches a card with the
  expiry and code read straight after it ("4532 0151 1283 0366 12 25 123"), a leading "oh", a
  card said twice. Windows never cut through a group: a solid 20+ digit run written as one block
  is an identifier (tracking, order, account number), not a card with a typo. Spoken digits are
  groups of their own, so inside spoken runs every window is tried; a long *spoken* number that
  is not a card (a 22-digit tracking number read out digit by digit) can therefore be redacted,
  which is the price of not missing a spoken card with an "oh" or an expiry attached.

A hit redacts the whole sequence: what was read out around a card (expiry, code) goes with it.
"""

from __future__ import annotations

from streams.redaction.numbers import Sequence

MIN_PAN, MAX_PAN = 13, 19
_E164_MAX = 15

#: First digit -> PAN lengths a window may have. Visa 13/16/19; Amex 15, Diners 14, JCB 16-19;
#: Mastercard, Mir, Discover, UnionPay, Maestro 16-19.
_WINDOW_LENGTHS: dict[str, frozenset[int]] = {
    "2": frozenset(range(16, 20)),
    "3": frozenset(range(14, 20)),
    "4": frozenset({13, 16, 19}),
    "5": frozenset(range(16, 20)),
    "6": frozenset(range(16, 20)),
}


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card(seq: Sequence, *, after_plus: bool = False) -> bool:
    digits = seq.digits
    if (
        MIN_PAN <= len(digits) <= MAX_PAN
        and digits[0] != "0"
        and not (after_plus and len(digits) <= _E164_MAX)
        and luhn_valid(digits)
    ):
        return True
    groups = seq.groups
    last = len(groups) - 1
    for i, head in enumerate(groups):
        lengths = _WINDOW_LENGTHS.get(head.digits[0])
        if lengths is None:
            continue
        window = ""
        for j in range(i, last + 1):
            window += groups[j].digits
            if len(window) > MAX_PAN:
                break
            if len(window) in lengths and (i, j) != (0, last) and luhn_valid(window):
                return True
    return False
