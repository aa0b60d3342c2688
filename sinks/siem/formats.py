"""Pure renderers of ``AuditEvent`` records for SIEMs: RFC 5424 syslog, CEF, JSON, OCSF, Splunk HEC.

Every renderer carries the event id (``event_id``) so a SIEM can drop the duplicates that the
at-least-once sinks may deliver. Input is an ``AuditEvent`` as the Avro codec decodes it
(``occurred_at`` an aware ``datetime``, or integer microseconds since the epoch) or as
``callvault.audit.audit_event`` builds it.

Mappings (one place, so the SIEM side can be configured from this docstring):

=========  ===============  ============  =================  ===================
outcome    syslog severity  CEF severity  OCSF status_id     OCSF severity_id
=========  ===============  ============  =================  ===================
SUCCESS    6 informational  3             1 Success          1 Informational
FAILURE    5 notice         5             2 Failure          2 Low
DENIED     4 warning        7             2 Failure          3 Medium
=========  ===============  ============  =================  ===================

A DENIED action (RBAC, region or policy refused it) is what an analyst hunts for, so it ranks
above a FAILURE (the action was allowed but an error stopped it). Syslog facility defaults to
``authpriv`` (10): audit trails are security/authorization messages.

OCSF classes (see :func:`ocsf_class`): ``*.login``/``*.logout`` -> Authentication (3002);
``trunk.*`` credential lifecycle (issue/create/rotate/reset/revoke/delete) -> Account Change
(3001); everything else -> API Activity (6003) with the activity taken from the verb.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from callvault import __version__

FACILITY_AUTHPRIV = 10
FACILITY_LOCAL4 = 20
#: RFC 5612 reserves PEN 32473 for documentation; a deployment with its own IANA enterprise
#: number passes its SD-ID (``"callvault@<pen>"``) instead.
DEFAULT_SD_ID = "callvault@32473"
OCSF_VERSION = "1.3.0"
PRODUCT = "Callvault"

SYSLOG_SEVERITY = {"SUCCESS": 6, "FAILURE": 5, "DENIED": 4}
CEF_SEVERITY = {"SUCCESS": 3, "FAILURE": 5, "DENIED": 7}
OCSF_SEVERITY = {"SUCCESS": 1, "FAILURE": 2, "DENIED": 3}

Payload = Literal["cef", "json"]
BOM = b"\xef\xbb\xbf"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- common -------------------------------------------------------------------------------------


def occurred_at(event: Mapping[str, Any]) -> datetime:
    value = event["occurred_at"]
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return EPOCH + timedelta(microseconds=int(value))


def epoch_micros(event: Mapping[str, Any]) -> int:
    delta = occurred_at(event) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def rfc3339(event: Mapping[str, Any]) -> str:
    """``2026-11-26T22:00:03.123456Z``: RFC 3339 / RFC 5424 TIMESTAMP with microseconds."""
    return occurred_at(event).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hex(value: bytes | bytearray | None) -> str | None:
    return None if value is None else bytes(value).hex()


def _printusascii(text: str, limit: int) -> str:
    """RFC 5424 PRINTUSASCII (33..126) only, at most ``limit`` characters; ``-`` when empty."""
    out = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)[:limit]
    return out or "-"


# --- JSON ---------------------------------------------------------------------------------------


def to_json_obj(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event as JSON-ready values in schema field order; details sorted, bytes as hex."""
    actor = event["actor"]
    details = event.get("details") or {}
    return {
        "event_id": event["event_id"],
        "occurred_at": rfc3339(event),
        "actor": {
            "kind": actor["kind"],
            "id": actor["id"],
            "workspace_id": actor.get("workspace_id"),
        },
        "action": event["action"],
        "workspace_id": event.get("workspace_id"),
        "region": event.get("region"),
        "target": event.get("target"),
        "outcome": event["outcome"],
        "details": {k: str(details[k]) for k in sorted(details)},
        "prev_hash": _hex(event.get("prev_hash")),
        "hash": _hex(event.get("hash")),
        "signature": _hex(event.get("signature")),
    }


def to_json(event: Mapping[str, Any]) -> str:
    """Compact JSON, stable key order (schema order, details sorted), UTF-8 text unescaped."""
    return json.dumps(to_json_obj(event), separators=(",", ":"), ensure_ascii=False)


# --- CEF ----------------------------------------------------------------------------------------


def cef_header_escape(text: str) -> str:
    """CEF header fields: backslash and pipe are escaped; newlines are not allowed (made spaces)."""
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r", " ").replace("\n", " ")


def cef_ext_escape(text: str) -> str:
    """CEF extension values: backslash, equals sign and line breaks are escaped (pipes are not)."""
    text = text.replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


def to_cef(event: Mapping[str, Any]) -> str:
    """``CEF:0|Callvault|Callvault|<version>|<action>|<name>|<severity>|<extension>``.

    Extension keys: ``rt`` (epoch ms), ``externalId`` (event id), ``act`` (action), ``suser``
    (actor id), ``outcome`` (success/denied/failure), custom strings ``cs1`` workspace, ``cs2``
    region, ``cs3`` target, ``cs4`` actor kind, ``cs5`` actor workspace, ``cs6`` chain hash (hex),
    each with its ``csNLabel``; ``msg`` holds the details as compact JSON.
    """
    outcome = event["outcome"]
    action = event["action"]
    actor = event["actor"]
    header = [
        "CEF:0",
        PRODUCT,
        PRODUCT,
        __version__,
        action,
        f"{action} {outcome.lower()}",
        str(CEF_SEVERITY[outcome]),
    ]
    ext: list[tuple[str, str | None]] = [
        ("rt", str(epoch_micros(event) // 1000)),
        ("externalId", event["event_id"]),
        ("act", action),
        ("suser", actor["id"]),
        ("outcome", outcome.lower()),
    ]
    custom = [
        ("workspace", event.get("workspace_id")),
        ("region", event.get("region")),
        ("target", event.get("target")),
        ("actorKind", actor["kind"]),
        ("actorWorkspace", actor.get("workspace_id")),
        ("chainHash", _hex(event.get("hash"))),
    ]
    for n, (label, value) in enumerate(custom, start=1):
        if value is not None:
            ext += [(f"cs{n}", value), (f"cs{n}Label", label)]
    details = event.get("details") or {}
    if details:
        ext.append(("msg", json.dumps(dict(sorted(details.items())), ensure_ascii=False)))
    head = "|".join([header[0], *(cef_header_escape(h) for h in header[1:])])
    body = " ".join(f"{k}={cef_ext_escape(v)}" for k, v in ext if v is not None)
    return f"{head}|{body}"


# --- RFC 5424 -----------------------------------------------------------------------------------


def sd_escape(value: str) -> str:
    """RFC 5424 6.3.3: inside PARAM-VALUE, ``"``, ``\\`` and ``]`` are escaped with a backslash."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _local_hostname() -> str:
    return socket.gethostname() or "-"


def to_rfc5424(
    event: Mapping[str, Any],
    *,
    app_name: str = "callvault",
    hostname: str | None = None,
    facility: int = FACILITY_AUTHPRIV,
    payload: Payload = "cef",
    sd_id: str = DEFAULT_SD_ID,
) -> bytes:
    """One RFC 5424 message (no transport framing).

    ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [sd_id eventId=.. ..] MSG`` where PRI is
    ``facility * 8 + severity`` (table in the module docstring), TIMESTAMP is UTC with
    microseconds, MSGID is the action (PRINTUSASCII, at most 32), and MSG is the CEF or JSON
    rendering. MSG is UTF-8; it starts with a BOM (as RFC 5424 6.4 asks of UTF-8 MSG) only when it
    contains non-ASCII text, because an ASCII MSG is equally valid as MSG-ANY and many SIEM
    parsers mishandle a leading BOM.
    """
    if not 0 <= facility <= 23:
        raise ValueError(f"syslog facility {facility} out of range 0..23")
    pri = facility * 8 + SYSLOG_SEVERITY[event["outcome"]]
    actor = event["actor"]
    params = [
        ("eventId", event["event_id"]),
        ("action", event["action"]),
        ("outcome", event["outcome"]),
        ("actor", actor["id"]),
        ("actorKind", actor["kind"]),
        ("workspace", event.get("workspace_id")),
        ("region", event.get("region")),
        ("target", event.get("target")),
    ]
    sd = "".join(f' {k}="{sd_escape(v)}"' for k, v in params if v is not None)
    header = " ".join(
        [
            f"<{pri}>1",
            rfc3339(event),
            _printusascii(hostname if hostname is not None else _local_hostname(), 255),
            _printusascii(app_name, 48),
            "-",
            _printusascii(event["action"], 32),
            f"[{_printusascii(sd_id, 32)}{sd}]",
        ]
    )
    msg = to_cef(event) if payload == "cef" else to_json(event)
    body = msg.encode()
    if not msg.isascii():
        body = BOM + body
    return header.encode() + b" " + body


def octet_frame(message: bytes) -> bytes:
    """RFC 5425 / RFC 6587 octet counting: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode() + b" " + message


# --- OCSF ---------------------------------------------------------------------------------------

AUTHENTICATION = (3002, "Authentication", 3, "Identity & Access Management")
ACCOUNT_CHANGE = (3001, "Account Change", 3, "Identity & Access Management")
API_ACTIVITY = (6003, "API Activity", 6, "Application Activity")

#: verb -> (activity_id, activity_name) per class
_AUTH_ACTIVITY = {"login": (1, "Logon"), "logout": (2, "Logoff")}
_ACCOUNT_ACTIVITY = {
    "issue": (1, "Create"),
    "create": (1, "Create"),
    "rotate": (3, "Password Change"),
    "reset": (4, "Password Reset"),
    "revoke": (5, "Disable"),
    "disable": (5, "Disable"),
    "enable": (2, "Enable"),
    "delete": (6, "Delete"),
}
_API_ACTIVITY = {
    "create": (1, "Create"),
    "invite": (1, "Create"),
    "read": (2, "Read"),
    "get": (2, "Read"),
    "list": (2, "Read"),
    "query": (2, "Read"),
    "export": (2, "Read"),
    "decrypt": (2, "Read"),
    "replay": (2, "Read"),
    "update": (3, "Update"),
    "set": (3, "Update"),
    "rotate": (3, "Update"),
    "grant": (3, "Update"),
    "assign": (3, "Update"),
    "delete": (4, "Delete"),
    "erase": (4, "Delete"),
    "purge": (4, "Delete"),
    "shred": (4, "Delete"),
    "revoke": (4, "Delete"),
}
_USER_TYPE = {"USER": (1, "User"), "SERVICE": (99, "Service"), "SYSTEM": (3, "System")}


def ocsf_class(action: str) -> tuple[tuple[int, str, int, str], tuple[int, str]]:
    """(class_uid, class_name, category_uid, category_name), (activity_id, activity_name)."""
    resource, _, verb = action.rpartition(".")
    if verb in _AUTH_ACTIVITY:
        return AUTHENTICATION, _AUTH_ACTIVITY[verb]
    if resource.split(".")[0] == "trunk" and verb in _ACCOUNT_ACTIVITY:
        return ACCOUNT_CHANGE, _ACCOUNT_ACTIVITY[verb]
    return API_ACTIVITY, _API_ACTIVITY.get(verb, (99, "Other"))


def to_ocsf(event: Mapping[str, Any]) -> dict[str, Any]:
    """An OCSF 1.x event (class per :func:`ocsf_class`); ``metadata.uid`` is the event id and
    ``metadata.tenant_uid`` the workspace. Details, region and chain hashes go to ``unmapped``."""
    action = event["action"]
    outcome = event["outcome"]
    actor = event["actor"]
    (class_uid, class_name, category_uid, category_name), (activity_id, activity_name) = ocsf_class(
        action
    )
    type_id, type_name = _USER_TYPE[actor["kind"]]
    actor_user: dict[str, Any] = {"uid": actor["id"], "type_id": type_id, "type": type_name}
    if actor.get("workspace_id"):
        actor_user["org"] = {"uid": actor["workspace_id"]}
    out: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity_name}",
        "time": epoch_micros(event) // 1000,
        "severity_id": OCSF_SEVERITY[outcome],
        "severity": {1: "Informational", 2: "Low", 3: "Medium"}[OCSF_SEVERITY[outcome]],
        "status_id": 1 if outcome == "SUCCESS" else 2,
        "status": "Success" if outcome == "SUCCESS" else "Failure",
        "message": f"{action} {outcome.lower()}",
        "metadata": {
            "uid": event["event_id"],
            "version": OCSF_VERSION,
            "log_name": "audit.events",
            "product": {"name": PRODUCT, "vendor_name": PRODUCT, "version": __version__},
        },
        "actor": {"user": actor_user},
    }
    if outcome == "DENIED":
        out["status_detail"] = "Denied by RBAC, region or policy"
    if event.get("workspace_id"):
        out["metadata"]["tenant_uid"] = event["workspace_id"]
    target = event.get("target")
    if class_uid == API_ACTIVITY[0]:
        out["api"] = {"operation": action}
        if target is not None:
            out["resources"] = [{"uid": target, "type": action.rpartition(".")[0] or action}]
    elif target is not None:
        out["user"] = {"uid": target}
    elif class_uid == AUTHENTICATION[0]:
        out["user"] = dict(actor_user)
    unmapped: dict[str, Any] = {"details": dict(sorted((event.get("details") or {}).items()))}
    for key in ("region", "prev_hash", "hash", "signature"):
        value = event.get(key)
        if value is not None:
            unmapped[key] = _hex(value) if isinstance(value, bytes | bytearray) else value
    out["unmapped"] = unmapped
    return out


# --- Splunk HEC ---------------------------------------------------------------------------------


def hec_envelope(
    event: Mapping[str, Any],
    *,
    host: str | None = None,
    source: str = "callvault",
    sourcetype: str = "callvault:audit",
    index: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time": round(epoch_micros(event) / 1_000_000, 6),
        "host": host if host is not None else _local_hostname(),
        "source": source,
        "sourcetype": sourcetype,
    }
    if index is not None:
        out["index"] = index
    out["fields"] = {"event_id": event["event_id"]}
    out["event"] = to_json_obj(event)
    return out


def to_hec(
    events: Iterable[Mapping[str, Any]],
    *,
    host: str | None = None,
    source: str = "callvault",
    sourcetype: str = "callvault:audit",
    index: str | None = None,
) -> bytes:
    """Body for ``POST /services/collector/event`` (Splunk HEC, JSON event protocol).

    Per Splunk's "Format events for HTTP Event Collector" and "HTTP Event Collector examples"
    (help.splunk.com, Get data in > Collect HTTP event data): each event is a JSON object with
    the event data in ``event`` and optional metadata ``time`` (epoch seconds; fractional part
    allowed), ``host``, ``source``, ``sourcetype``, ``index`` and ``fields`` (indexed fields,
    flat string values); a batch is the objects concatenated back to back in one request body
    ("Example 3: Batched events" shows ``{"event": ...}{"event": ...}`` with no separator), which
    is what this returns. ``fields.event_id`` makes the id searchable for de-duplication.
    """
    return b"".join(
        json.dumps(
            hec_envelope(e, host=host, source=source, sourcetype=sourcetype, index=index),
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        for e in events
    )


def encode_ocsf(event: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) for the ``siem.ocsf`` topic: keyed by the audit event id (``metadata.uid``),
    so a consumer can drop the duplicates an at-least-once producer may write by key alone; value
    the OCSF event as compact UTF-8 JSON (SIEMs that read Kafka expect JSON, not Avro)."""
    key = str(event["event_id"]).encode()
    value = json.dumps(to_ocsf(event), separators=(",", ":"), ensure_ascii=False).encode()
    return key, value
