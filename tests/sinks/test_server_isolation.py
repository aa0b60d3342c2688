"""Workspace isolation on a ClickHouse server: the DDL that gives each workspace its own
read-only user confined to its rows.

No ClickHouse server with row policies can be installed on this machine (Debian ships 18.16,
older than row policies; the project's engine is chDB, which cannot create users), so the
statements are checked by the real ClickHouse parser inside chDB (``EXPLAIN AST``) and by what
they must and must not grant; the embedded path's isolation is proven end to end in
tests/streams/test_workspace_isolation.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sinks.clickhouse import isolation
from sinks.errors import SinkRejected


def _parse_with_clickhouse(statements: list[str]) -> list[str]:
    """Each statement through ClickHouse's own parser (in a fresh process: chDB allows one
    engine path per process and the test session may hold one)."""
    script = (
        "import chdb, json, sys\n"
        "out = []\n"
        "for s in json.load(sys.stdin):\n"
        "    try:\n"
        "        chdb.query('EXPLAIN AST ' + s, 'CSV'); out.append('ok')\n"
        "    except Exception as e:\n"
        "        out.append(str(e)[:300])\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(statements), capture_output=True,
        text=True, check=True, timeout=120,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_each_workspace_gets_a_read_only_user_and_row_policies_clickhouse_parses():
    password = isolation.server_password(b"secret", "acme-eu")
    statements = isolation.server_statements("callvault", "acme-eu", password, "callvault_admin")
    assert _parse_with_clickhouse(statements) == ["ok"] * len(statements)
    text = "\n".join(statements)
    assert "readonly = 1 CONST" in text and password not in text  # only its SHA-256 is sent
    grants = [s for s in statements if s.startswith("GRANT")]
    assert grants == [f"GRANT SELECT ON callvault.{t} TO `cv_ws_acme-eu`"
                      for t in isolation.TENANT_TABLES]  # fmt: skip
    policies = [s for s in statements if "ROW POLICY" in s and "cv_ws_" in s.split(" ON ")[0]]
    assert len(policies) == len(isolation.TENANT_TABLES)
    assert all("USING workspace_id = 'acme-eu'" in p for p in policies)
    # the admin keeps seeing every row once policies exist on the tables
    assert sum("TO `callvault_admin`" in s for s in statements) == len(isolation.TENANT_TABLES)


def test_passwords_are_derived_per_workspace_and_secret():
    a = isolation.server_password(b"secret", "acme")
    assert a == isolation.server_password(b"secret", "acme")  # every worker computes the same
    assert a != isolation.server_password(b"secret", "globex")
    assert a != isolation.server_password(b"other", "acme")


@pytest.mark.parametrize("bad", ["acme'; DROP TABLE calls; --", "Acme", "a b", "`x`", "a"])
def test_a_workspace_id_that_could_break_out_of_the_ddl_is_refused(bad):
    with pytest.raises(SinkRejected):
        isolation.server_statements("callvault", bad, "pw", "admin")


def test_an_odd_admin_user_name_is_refused():
    with pytest.raises(SinkRejected):
        isolation.server_statements("callvault", "acme", "pw", "admin` TO ALL; --")
