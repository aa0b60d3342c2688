"""Dialog bookkeeping the UAS needs to send its own in-dialog requests (BYE on timeouts)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    # RFC 3261 magic cookie: marks the branch as globally unique.
    return "z9hG4bK" + secrets.token_hex(8)


@dataclass
class Dialog:
    sip_call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the To of the INVITE (us), as it appeared
    remote_uri: str  # the From of the INVITE (the PBX)
    remote_target: str  # Contact URI of the INVITE
    remote_cseq: int
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(10_000) + 1)

    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq
