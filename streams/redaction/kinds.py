"""What a redaction can be, how it reads in the text, and which label wins when two overlap.

The label is all that survives a redaction: the metadata counts kinds, never values.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["card", "security_code", "pin", "expiry", "dtmf"]

#: Replacement text per kind. Short and bracketed so a reader sees something was removed, and so
#: a second pass recognises it (``tokens.REDACTION``) and never counts it again.
REPLACEMENT: dict[Kind, str] = {
    "card": "[REDACTED:card]",
    "security_code": "[REDACTED:cvv]",
    "pin": "[REDACTED:pin]",
    "expiry": "[REDACTED:expiry]",
    "dtmf": "[REDACTED:dtmf]",
}

#: When detectors claim overlapping text the union is replaced once. A card always names it (a
#: card keyed in on the keypad is a card, not DTMF); otherwise the nearer keyword, then this.
PRIORITY: dict[Kind, int] = {"card": 0, "security_code": 1, "pin": 2, "expiry": 3, "dtmf": 4}
