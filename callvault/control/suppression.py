"""Workspace suppression rules: which calls are never recorded, decided from who is on the line.

A rule is ``<field>:<value>``; the first rule that matches suppresses the call, and its text is the
recorded ``suppression_reason`` (so a report says *why* a call has no recording):

- ``caller_prefix:+4480`` / ``callee_prefix:0800``: the number, normalised to ``+`` and digits,
  starts with the value (a helpline range, a ward's extensions);
- ``agent:<agent id>`` / ``trunk:<trunk id>``: calls handled by that agent or arriving on that
  trunk.

The same function runs at the SIP edge (nothing is published) and again in the metadata processor
(defence in depth: a rule added while the call was ringing still applies, and a buggy edge cannot
leak a recording the policy forbids).
"""

from __future__ import annotations

from collections.abc import Iterable

from callvault.errors import ControlError

FIELDS = ("caller_prefix", "callee_prefix", "agent", "trunk")


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch == "+" or ch.isdigit())


def validate_rule(rule: str) -> str:
    field, sep, value = rule.partition(":")
    if not sep or field not in FIELDS or not value.strip():
        raise ControlError(
            f"suppression rule {rule!r} must be one of " + ", ".join(f"{f}:<value>" for f in FIELDS)
        )
    if field.endswith("_prefix") and not _digits(value):
        raise ControlError(f"suppression rule {rule!r}: the prefix needs digits")
    return f"{field}:{value.strip()}"


def matching_rule(
    rules: Iterable[str],
    *,
    caller: str | None,
    callee: str | None,
    agent_id: str | None,
    trunk_id: str | None,
) -> str | None:
    """The first rule that suppresses this call, or ``None``. Malformed rules never match (they
    are refused when a policy is written; an old one must not crash a processor)."""
    for rule in rules:
        field, _, value = rule.partition(":")
        if field == "caller_prefix" and caller and _digits(caller).startswith(_digits(value)):
            return rule
        if field == "callee_prefix" and callee and _digits(callee).startswith(_digits(value)):
            return rule
        if field == "agent" and agent_id is not None and agent_id == value:
            return rule
        if field == "trunk" and trunk_id is not None and trunk_id == value:
            return rule
    return None
