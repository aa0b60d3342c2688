"""The rules: which keywords make a nearby number secret, and which numbers qualify.

The window engine that applies them is ``context``.

Rules (window after / before a keyword, in words):

* security code (8/3): 3-4 digits near CVV / CVC / CV2 / CID / CSC / "security code" / "card
  verification" / "three digit code" / "digits on the back" / "back of the card".
* PIN (6/3): 4-6 digits near "PIN" / "passcode" (PCI: never store a PIN). An Indian postal
  "PIN code" is redacted too; accepted.
* expiry (5/3): MMYY, MYY, MMYYYY, MYYYY (month 1-12, year 2020-2049) or a month name and year
  ("March 2027", "March twenty twenty-seven") near "exp" / "expires" / "expiry" / "valid
  thru". PCI does not require it once the PAN is gone; it is removed because an expiry and a
  code are half of a card-not-present fraud, and a PAN split across segments may slip.
* DTMF (4/3): the first sequence with at least one digit, keypad ``*`` / ``#`` included, after
  "DTMF" / ``<dtmf>`` / "keypad" / "touch tone" / "key press" (or the nearest before: "entered
  1234 on the keypad"), or after "pressed" / "typed" / "keyed", whatever its length: a PIN or
  an account number keyed in is as sensitive as a card, and a menu choice ("pressed 1") is not
  worth the risk of guessing. Over-inclusive by design.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from streams.redaction.kinds import Kind


def _cvv(digits: str) -> bool:
    return 3 <= len(digits) <= 4 and digits.isdigit()


def _pin(digits: str) -> bool:
    return 4 <= len(digits) <= 6 and digits.isdigit()


def _dtmf(digits: str) -> bool:
    return any(ch.isdigit() for ch in digits)


def is_year(digits: str) -> bool:
    return (len(digits) == 2 and 20 <= int(digits) <= 49) or (
        len(digits) == 4 and 2020 <= int(digits) <= 2049
    )


def _expiry(digits: str) -> bool:
    if not digits.isdigit() or not 3 <= len(digits) <= 6:
        return False
    month_len = 2 - len(digits) % 2  # MYY, MMYY, MYYYY, MMYYYY
    return 1 <= int(digits[:month_len]) <= 12 and is_year(digits[month_len:])


@dataclass(frozen=True)
class Rule:
    kind: Kind
    keywords: re.Pattern[str]
    after: int
    before: int
    qualifies: Callable[[str], bool]
    keypad: bool = False
    months: bool = False
    #: Only the first number after the keyword: a marker marks one digit string.
    first_only: bool = False


_I = re.IGNORECASE
RULES = (
    Rule(
        "security_code",
        re.compile(
            r"\b(?:cvv2?|cvc2?|cv2|cvn|cid|csc|cav2)\b"
            r"|\bsecurity\s+(?:code|number|digits)\b"
            r"|\bcard\s+verification\b"
            r"|\b(?:three|four|3|4)[\s-]?digits?\s+(?:security\s+)?(?:code|number)\b"
            r"|\bdigits\s+on\s+the\s+(?:back|front)\b"
            r"|\bback\s+of\s+(?:the|your|my)\s+card\b",
            _I,
        ),
        after=8,
        before=3,
        qualifies=_cvv,
    ),
    Rule("pin", re.compile(r"\bpin\b|\bpasscode\b", _I), after=6, before=3, qualifies=_pin),
    Rule(
        "expiry",
        re.compile(
            r"\bexp(?:ir(?:y|ation|es?|ed|ing))?\b"
            r"|\bvalid\s+(?:thru|through|until|till)\b|\bgood\s+(?:thru|through)\b",
            _I,
        ),
        after=5,
        before=3,
        qualifies=_expiry,
        months=True,
    ),
    Rule(
        "dtmf",
        re.compile(
            r"(?<![A-Za-z/])dtmf(?![A-Za-z])|\bkey\s?pad\b|\btouch[\s-]?tones?\b"
            r"|\bkey\s?press(?:es)?\b",
            _I,
        ),
        after=4,
        before=3,
        qualifies=_dtmf,
        keypad=True,
        first_only=True,
    ),
    # The verbs only look forward: "pressed 1234", never "order #12345 and I typed my email".
    Rule(
        "dtmf",
        re.compile(r"\b(?:pressed|typed|keyed)\b", _I),
        after=4,
        before=0,
        qualifies=_dtmf,
        keypad=True,
        first_only=True,
    ),
)
