"""RBAC and token handling, pure (no broker): built-in roles, custom roles, workspace scoping,
escalation refusals, and the token format and digest."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest

from callvault.control.identity import (
    ApiToken,
    RoleDefinition,
    User,
    generate_token,
    identity_from_record,
    parse_token,
    token_digest,
    token_matches,
)
from callvault.control.rbac import (
    ALL_PERMISSIONS,
    BUILTIN_ROLES,
    Permission,
    Principal,
    builtin_role,
    check,
    custom_role,
    may_grant,
)
from callvault.errors import (
    AuthenticationFailed,
    ControlError,
    PermissionDenied,
)
from schemas.codec import get_codec

P = Permission


def who(role: str, workspace: str = "acme", **custom: frozenset[Permission]) -> Principal:
    roles = {
        ("acme", name): custom_role("acme", name, [p.value for p in perms])
        for name, perms in custom.items()
    }
    return Principal("u1", {workspace: role}, roles)


# ----------------------------------------------------------------------------- built-in roles


def test_the_issue_names_every_permission() -> None:
    assert {p.value for p in Permission} >= {
        "recordings.view", "transcripts.view", "recordings.download", "trunks.manage",
        "extensions.manage", "agents.manage", "billing.view", "users.invite", "audit.read",
        "topics.replay", "topics.decrypt", "erasure.execute", "export.execute",
        "workspace.manage",
    }  # fmt: skip


def test_builtin_role_table() -> None:
    assert BUILTIN_ROLES["owner"] == ALL_PERMISSIONS
    assert BUILTIN_ROLES["admin"] == ALL_PERMISSIONS - {P.WORKSPACE_MANAGE}
    assert BUILTIN_ROLES["member"] == {
        P.RECORDINGS_VIEW, P.TRANSCRIPTS_VIEW, P.CALLS_QUERY, P.AGENTS_MANAGE,
    }  # fmt: skip
    assert BUILTIN_ROLES["analyst"] == {
        P.CALLS_QUERY, P.RECORDINGS_VIEW, P.TRANSCRIPTS_VIEW, P.BILLING_VIEW,
    }  # fmt: skip
    assert BUILTIN_ROLES["auditor"] == {P.AUDIT_READ, P.CALLS_QUERY}


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("owner", True), ("admin", True), ("member", False), ("analyst", False), ("auditor", False)],
)
def test_downloads_are_owner_and_admin_only_by_default(role: str, allowed: bool) -> None:
    principal = who(role)
    assert principal.can("acme", "recordings.download") is allowed
    if not allowed:
        with pytest.raises(PermissionDenied, match=rf"role '{role}'.*recordings\.download.*'acme'"):
            check(principal, "acme", P.RECORDINGS_DOWNLOAD)


def test_member_views_but_cannot_manage_trunks_or_read_the_audit_log() -> None:
    member = who("member")
    check(member, "acme", P.RECORDINGS_VIEW)
    check(member, "acme", P.TRANSCRIPTS_VIEW)
    for perm in (P.TRUNKS_MANAGE, P.AUDIT_READ, P.USERS_INVITE, P.TOPICS_DECRYPT):
        with pytest.raises(PermissionDenied):
            check(member, "acme", perm)


def test_auditor_reads_the_audit_log_but_no_content() -> None:
    auditor = who("auditor")
    check(auditor, "acme", "audit.read")
    for perm in (P.RECORDINGS_VIEW, P.TRANSCRIPTS_VIEW, P.RECORDINGS_DOWNLOAD):
        assert not auditor.can("acme", perm)


def test_a_role_in_one_workspace_grants_nothing_in_another() -> None:
    owner = who("owner", "acme")
    check(owner, "acme", P.RECORDINGS_DOWNLOAD)
    with pytest.raises(PermissionDenied, match="'u1' is not a member of workspace 'globex'"):
        check(owner, "globex", P.RECORDINGS_VIEW)
    assert owner.permissions_in("globex") == frozenset()


def test_unknown_permission_is_refused_by_name() -> None:
    with pytest.raises(ControlError, match=r"unknown permission 'recordings\.steal'"):
        check(who("owner"), "acme", "recordings.steal")


# ----------------------------------------------------------------------------- custom roles


def test_custom_role_grants_exactly_its_permissions_in_its_workspace() -> None:
    billing = who("billing", billing=frozenset({P.BILLING_VIEW}))
    check(billing, "acme", P.BILLING_VIEW)
    assert not billing.can("acme", P.RECORDINGS_VIEW)
    # the same role name in another workspace is a different (here: nonexistent) role
    elsewhere = Principal("u1", {"globex": "billing"}, billing.custom_roles)
    assert not elsewhere.can("globex", P.BILLING_VIEW)


def test_custom_role_validation() -> None:
    with pytest.raises(ControlError, match=r"unknown permission 'billing\.edit'"):
        custom_role("acme", "billing", ["billing.edit"])
    with pytest.raises(ControlError, match="built-in role"):
        custom_role("acme", "admin", ["billing.view"])
    with pytest.raises(ControlError, match="at least one permission"):
        custom_role("acme", "empty", [])
    with pytest.raises(ControlError, match="role name"):
        custom_role("acme", "Bad Name", ["billing.view"])


def test_a_membership_naming_a_missing_role_grants_nothing() -> None:
    ghost = Principal("u1", {"acme": "deleted-role"})
    with pytest.raises(PermissionDenied, match="role 'deleted-role'"):
        check(ghost, "acme", P.RECORDINGS_VIEW)


# ----------------------------------------------------------------------------- granting


def test_only_owners_grant_owner_and_nobody_grants_what_they_lack() -> None:
    billing = custom_role("acme", "billing", ["billing.view"])
    may_grant(who("owner"), "acme", billing)
    owner = builtin_role("owner")
    admin = builtin_role("admin")
    assert owner is not None and admin is not None
    may_grant(who("owner"), "acme", owner)
    may_grant(who("admin"), "acme", admin)
    with pytest.raises(PermissionDenied, match="only owners may grant owner"):
        may_grant(who("admin"), "acme", owner)
    with pytest.raises(PermissionDenied, match=r"users\.invite"):
        may_grant(who("member"), "acme", billing)
    inviter = who("inviter", inviter=frozenset({P.USERS_INVITE, P.RECORDINGS_VIEW}))
    with pytest.raises(PermissionDenied, match=r"includes recordings\.download"):
        may_grant(inviter, "acme", custom_role("acme", "dl", ["recordings.download"]))
    may_grant(inviter, "acme", custom_role("acme", "viewer", ["recordings.view"]))


# ----------------------------------------------------------------------------- tokens


def test_token_format_entropy_and_parse() -> None:
    token_id, token = generate_token()
    assert re.fullmatch(r"cvt_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)
    assert parse_token(token) == token_id
    assert parse_token(f"  {token}\n") == token_id
    assert generate_token()[1] != token


@pytest.mark.parametrize(
    "bad", ["", "cvt_", "cvt_abc_def", "xyz_0123456789ab_" + "a" * 43, "cvt_0123456789ab_sh0rt"]
)
def test_malformed_tokens_are_refused_without_being_quoted(bad: str) -> None:
    with pytest.raises(AuthenticationFailed, match="malformed API token") as err:
        parse_token(bad)
    assert len(bad) < 8 or bad not in str(err.value)


def test_digest_is_sha256_and_comparison_exact() -> None:
    _, token = generate_token()
    digest = token_digest(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert token_matches(token, digest)
    assert not token_matches(token[:-1] + ("A" if token[-1] != "A" else "B"), digest)


def test_token_expiry() -> None:
    now = datetime.now(UTC)
    t = ApiToken("0123456789ab", "alice", "d" * 64, expires_at=now + timedelta(days=1))
    assert not t.expired(now)
    assert t.expired(now + timedelta(days=2))
    assert not ApiToken("0123456789ab", "alice", "d" * 64).expired(now + timedelta(days=9999))


def test_records_round_trip_through_the_codec_without_secrets_in_json() -> None:
    codec = get_codec()
    items = [
        User("alice", {"acme": "owner"}, name="Alice", email="a@example.com", created_by="cli:x"),
        ApiToken("0123456789ab", "alice", "d" * 64, label="laptop", created_by="alice"),
        RoleDefinition("acme", "billing", ("billing.view",), created_by="alice"),
    ]
    for item in items:
        back = identity_from_record(codec.decode("IdentityRecord", codec.encode(
            "IdentityRecord", item.to_record())))  # fmt: skip
        assert back == item
    assert "d" * 64 not in str(items[1].to_json())
