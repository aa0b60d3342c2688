"""Workspace isolation enforced by the engine, not by Python: a workspace-scoped query session
sees only its workspace's rows, whatever SQL it sends.

chDB cannot create users or row policies at run time (no writable access storage) and cannot run
a query as another user, but it loads a ``users.xml`` at first open. So the one user chDB runs
as gets, from that file:

- **grants without sources**: database objects only, no FILE/URL/REMOTE/S3/executable table
  functions, no introspection — a query cannot read a part file, another process or the network;
- **a row filter on every tenant table**: ``workspace_id = substring(getSetting('log_comment'),
  4)``, or everything when ``log_comment`` is ``cv:admin`` (the worker's own writer handle).

A scoped session is a fresh handle that runs ``SET log_comment='cv:<workspace>'`` then
``SET readonly=1``; from then on neither setting can change (``Code: 164``), so subqueries,
UNION, ``merge()``, ``view()``, ``SETTINGS`` overrides and table functions all see the filtered
rows or fail. An empty or unknown ``log_comment`` sees nothing (fail closed).

``log_comment`` carries the scope because chDB refuses custom settings; readonly protects it.
What a scoped session can still see is table-level metadata in ``system.*`` (row counts, part
sizes), never row contents. The file only applies to the first open of the engine in a process:
:func:`verify` checks at start that it did.

With a ClickHouse server the same contract is a database user per workspace
(:func:`server_statements`, run by the admin connection before the workspace's first scoped
query): ``readonly = 1`` as a CONST setting, SELECT granted on the tenant tables only (so no table
functions, no sources, no other databases), and a row policy per tenant table that shows it its
own workspace's rows. Because any row policy on a table hides the table from users it does not
name, the admin connection gets a ``USING 1`` policy of its own. The password is derived
(HMAC-SHA256 of the workspace id under ``clickhouse.workspace_secret``), so every worker computes
the same one and nothing has to be stored; the server keeps only its SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

from sinks.errors import SinkRejected

#: Tables that hold workspace rows; each gets a row filter.
TENANT_TABLES = ("calls", "call_events", "tool_invocations", "transcripts", "audit_log")
ADMIN = "cv:admin"
_WORKSPACE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
_FILTER = f"getSetting('log_comment') = '{ADMIN}' OR workspace_id = substring(getSetting('log_comment'), 4)"  # noqa: E501
_GRANTS = (
    "GRANT SELECT, INSERT, ALTER, CREATE TABLE, CREATE DATABASE, CREATE VIEW, DROP, TRUNCATE, "
    "OPTIMIZE, SHOW ON *.*"
)


def scope_comment(workspace_id: str) -> str:
    if not _WORKSPACE_ID.match(workspace_id):
        raise SinkRejected(f"not a workspace id: {workspace_id!r}")
    return f"cv:{workspace_id}"


def write_config(chdb_dir: Path, database: str) -> Path:
    """Write config.xml + users.xml beside the chDB directory; returns the config path."""
    directory = chdb_dir.with_name(chdb_dir.name + "-access")
    directory.mkdir(parents=True, exist_ok=True)
    users, config = directory / "users.xml", directory / "config.xml"
    tables = "".join(f"<{t}><filter>{_FILTER}</filter></{t}>" for t in TENANT_TABLES)
    users.write_text(
        "<clickhouse>\n"
        "  <profiles><default><allow_introspection_functions>0</allow_introspection_functions>"
        "</default></profiles>\n"
        "  <users><default><password></password><profile>default</profile><quota>default</quota>\n"
        f"    <databases><{database}>{tables}</{database}></databases>\n"
        f"    <grants><query>{_GRANTS}</query></grants>\n"
        "  </default></users>\n"
        "  <quotas><default/></quotas>\n"
        "</clickhouse>\n"
    )
    config.write_text(
        "<clickhouse>\n"
        f"  <user_directories><users_xml><path>{users}</path></users_xml></user_directories>\n"
        "</clickhouse>\n"
    )
    return config


def verify_grants(grants: list[str]) -> None:
    """The engine runs under the restricted user (the config applied): no sources, no ALL."""
    text = " ".join(grants).upper()
    if "ALL" in text.split() or any(g in text for g in ("FILE", "URL", "REMOTE", "SOURCES")):
        raise SinkRejected(
            "the embedded ClickHouse did not load Callvault's access config (another part of "
            f"this process opened it first?): grants are {grants}"
        )


def server_user(workspace_id: str) -> str:
    scope_comment(workspace_id)  # validates: only [a-z0-9_-], so safe in quotes and backticks
    return f"cv_ws_{workspace_id}"


def server_password(secret: bytes, workspace_id: str) -> str:
    return hmac.new(secret, f"clickhouse-user:{workspace_id}".encode(), hashlib.sha256).hexdigest()


def server_statements(
    database: str, workspace_id: str, password: str, admin_user: str
) -> list[str]:
    """DDL that gives ``workspace_id`` its own read-only user confined to its rows. Idempotent:
    re-running it converges the password and leaves existing grants and policies as they are."""
    user = f"`{server_user(workspace_id)}`"
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", admin_user):
        raise SinkRejected(f"unexpected admin user name {admin_user!r}")
    digest = hashlib.sha256(password.encode()).hexdigest()
    auth = f"IDENTIFIED WITH sha256_hash BY '{digest}'"
    out = [
        f"CREATE USER IF NOT EXISTS {user} {auth} "
        "SETTINGS readonly = 1 CONST, allow_introspection_functions = 0 CONST",
        f"ALTER USER {user} {auth}",
    ]
    for table in TENANT_TABLES:
        target = f"{database}.{table}"
        out += [
            f"GRANT SELECT ON {target} TO {user}",
            f"CREATE ROW POLICY IF NOT EXISTS {user} ON {target} FOR SELECT "
            f"USING workspace_id = '{workspace_id}' AS PERMISSIVE TO {user}",
            f"CREATE ROW POLICY IF NOT EXISTS `cv_admin` ON {target} FOR SELECT "
            f"USING 1 AS PERMISSIVE TO `{admin_user}`",
        ]
    return out
