"""SIP trunk credentials as the spec states them: a 24-character random password, stored only as
digest material (HA1), never in what operators see."""

from __future__ import annotations

import string
from collections import Counter

from callvault.control.trunks import TrunkCredential, generate_password
from sip_ingest.sip.digest import ha1


def test_passwords_are_24_random_characters_of_62_symbols():
    passwords = [generate_password() for _ in range(2000)]
    assert all(len(p) == 24 for p in passwords)
    alphabet = set(string.ascii_letters + string.digits)
    assert set("".join(passwords)) == alphabet  # all 62 symbols used, nothing else
    assert len(set(passwords)) == len(passwords)
    # no symbol is favoured: each appears close to 48000/62 ~ 774 times
    counts = Counter("".join(passwords))
    assert min(counts.values()) > 600 and max(counts.values()) < 950


def test_only_digest_material_is_kept_and_none_is_shown():
    password = generate_password()
    cred = TrunkCredential(
        trunk_id="pbx1", workspace_id="acme", username="pbx1-0a1b", realm="callvault",
        ha1_md5=ha1("pbx1-0a1b", "callvault", password, "MD5"),
        ha1_sha256=ha1("pbx1-0a1b", "callvault", password, "SHA-256"),
    )  # fmt: skip
    stored = repr(cred.to_record())
    assert password not in stored
    shown = repr(cred.to_json())
    assert password not in shown and cred.ha1_md5 not in shown and cred.ha1_sha256 not in shown
