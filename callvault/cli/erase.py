"""``callvault erase`` and ``callvault certificate``: erasure on request, and its signed proof.

``erase workspace`` (contract termination) and ``erase subject`` (a data subject's request)
write an erasure request; the worker of the workspace's home region carries it out (its bucket,
its analytics store, the key shred) and issues a signed deletion certificate, which this command
waits for and saves. ``certificate verify`` checks one offline against the deployment's public
key (``audit.public_key_file``, or ``--public-key``): the same key that signs the audit chain.

Who may: ``erasure.execute`` in the workspace; erasing the whole workspace also needs
``workspace.manage`` (owners), since it ends the workspace. Every request is an audit event
(``erasure.request``), so is every refusal, and the worker audits the completion.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from callvault.audit import AuditLog, audit_event, cli_actor
from callvault.audit_chain import load_public_key, public_key
from callvault.certificates import (
    CertificateError,
    load_file,
    to_json,
    verify,
)
from callvault.cli.asyncrun import run
from callvault.cli.auth import authorize, presented_token
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, emit_table, json_option
from callvault.control.erasure import ErasureDirectory, ErasureKind, subject_hash
from callvault.control.rbac import Permission
from callvault.control.trunks import TrunkDirectory
from callvault.control.workspaces import WorkspaceDirectory
from callvault.errors import ControlError
from callvault.settings import Settings
from streams.metadata import mask_number


@click.group()
def erase() -> None:
    """Erase a workspace or a data subject from every store, with a signed certificate."""


_wait = click.option(
    "--wait/--no-wait", default=True, show_default=True,
    help="Wait for the certificate (else print the request id; fetch it later with "
         "'callvault certificate get').",
)  # fmt: skip
_timeout = click.option(
    "--timeout", "timeout_s", type=float, default=600.0, show_default=True,
    help="Seconds to wait for the home region's worker.",
)  # fmt: skip
_out = click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Where to save the certificate (JSON); default: deletion-certificate-<request>.json.",
)  # fmt: skip
_reason = click.option("--reason", default=None, help="Ticket or reason, kept with the request.")


@erase.command("workspace")
@click.argument("workspace_id")
@_reason
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_wait
@_timeout
@_out
@json_option
@click.pass_context
def erase_workspace(
    ctx: click.Context, workspace_id: str, reason: str | None, yes: bool, wait: bool,
    timeout_s: float, out: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """Erase WORKSPACE_ID (contract termination): every recording, transcript, row and key.

    The workspace stops taking calls at once (calls in progress are ended, its trunks revoked);
    its id cannot be reused. The audit trail is kept
    (ids and counts only) for its own retention. Needs erasure.execute and workspace.manage.
    """
    settings = get_settings(ctx)
    if not yes:
        if not sys.stdin.isatty():
            raise ControlError("refusing to erase a workspace without --yes when not on a terminal")
        click.confirm(
            f"Erase workspace {workspace_id!r} and all of its data? This cannot be undone",
            abort=True,
        )
    result = run(_erase(settings, "WORKSPACE", workspace_id, None, reason, wait, timeout_s, out))
    _report(result, as_json)


@erase.command("subject")
@click.option("--workspace", "workspace_id", required=True, help="The subject's workspace.")
@click.option("--phone", required=True, help="The subject's number (caller or callee), E.164.")
@_reason
@_wait
@_timeout
@_out
@json_option
@click.pass_context
def erase_subject(
    ctx: click.Context, workspace_id: str, phone: str, reason: str | None, wait: bool,
    timeout_s: float, out: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """Erase every call of one caller (data-subject request): recordings, transcripts, rows and
    call keys. The number itself is never stored: the request holds its keyed hash. Needs
    erasure.execute."""
    settings = get_settings(ctx)
    phone_hash = subject_hash(settings, workspace_id, phone)
    subject = (phone_hash, mask_number(phone))
    result = run(_erase(settings, "SUBJECT", workspace_id, subject, reason, wait, timeout_s, out))
    _report(result, as_json)


async def _erase(
    settings: Settings, kind: ErasureKind, workspace_id: str, subject: tuple[str, str] | None,
    reason: str | None, wait: bool, timeout_s: float, out: Path | None,
) -> dict[str, Any]:  # fmt: skip
    action = "erasure.request"
    principal = await authorize(settings, workspace_id, Permission.ERASURE_EXECUTE, action=action)
    if kind == "WORKSPACE":
        await authorize(settings, workspace_id, Permission.WORKSPACE_MANAGE, action=action)
    actor = principal.user_id if principal else cli_actor()
    async with WorkspaceDirectory(settings, actor=actor) as workspaces:
        policy = workspaces.policy(workspace_id)
        if policy is None:
            raise ControlError(f"workspace {workspace_id!r} does not exist")
        if kind == "WORKSPACE":
            await workspaces.mark_deleted(workspace_id)
    if kind == "WORKSPACE":  # its PBXs are cut off too (each revocation audited)
        async with TrunkDirectory(settings, actor=actor) as trunks:
            for cred in trunks.list(workspace_id):
                if cred.active:
                    await trunks.revoke(cred.trunk_id)
    async with ErasureDirectory(settings) as d:
        request = await d.request(
            kind, workspace_id, requested_by=actor, reason=reason,
            subject_phone_hash=subject[0] if subject else None,
        )  # fmt: skip
        request_id = request["request_id"]
        await AuditLog(settings, d.producer).record(audit_event(
            action, actor_kind="USER", actor_id=actor, workspace_id=workspace_id,
            region=policy.region, target=f"erasure:{request_id}",
            details={"kind": kind, "reason": reason or "",
                     **({"subject": subject[1]} if subject else {})},
        ))  # fmt: skip
        result: dict[str, Any] = {
            "request_id": request_id, "kind": kind, "workspace_id": workspace_id,
            "region": policy.region,
        }  # fmt: skip
        if not wait:
            return {**result, "status": "requested"}
        with Console(stderr=True).status(
            f"erasing in {policy.region} (request {request_id}) ..."
        ):  # fmt: skip
            cert = await d.wait_certificate(request_id, timeout_s)
    if cert is None:
        raise ControlError(
            f"no certificate for request {request_id} within {timeout_s:.0f} s: is the "
            f"{policy.region} worker running? The request stays queued; fetch the certificate "
            f"later with 'callvault certificate get {request_id}'"
        )
    doc = to_json(cert)
    path = out or Path(f"deletion-certificate-{request_id}.json")
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return {**result, "status": "erased", **_summary(doc), "certificate": str(path)}


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    items = doc["items"]
    rows: dict[str, int] = {}
    for i in items:
        if i["store"] == "clickhouse":
            table = i["locator"].split(" ", 1)[0]
            rows[table] = rows.get(table, 0) + int(i["count"])
    return {
        "certificate_id": doc["certificate_id"],
        "issued_at": doc["issued_at"],
        "objects_deleted": sum(1 for i in items if i["store"] == "s3"),
        "rows_deleted": rows,
        "keys_shredded": len(doc["key_ids_shredded"]),
        "signing_key_id": doc["signing_key_id"],
    }


def _report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    if result["status"] == "requested":
        click.echo(f"erasure requested: {result['request_id']} ({result['region']})")
        return
    rows = ", ".join(f"{t} {n}" for t, n in sorted(result["rows_deleted"].items())) or "none"
    click.echo(
        f"erased ({result['kind'].lower()}) in {result['workspace_id']}: "
        f"{result['objects_deleted']} objects, rows: {rows}, {result['keys_shredded']} keys "
        f"shredded\ncertificate {result['certificate_id']} -> {result['certificate']} "
        f"(check it with 'callvault certificate verify {result['certificate']}')"
    )


@click.group()
def certificate() -> None:
    """Signed deletion certificates: fetch, list, verify."""


@certificate.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--public-key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None, help="Trusted Ed25519 public key (PEM); default: the deployment's audit key.",
)  # fmt: skip
@json_option
@click.pass_context
def certificate_verify(
    ctx: click.Context, path: Path, key_file: Path | None, as_json: bool
) -> None:
    """Check a certificate's signature offline; exit status 3 if it does not verify."""
    key = load_public_key(key_file) if key_file else public_key(get_settings(ctx))
    verdict = verify(load_file(path), key)
    if as_json:
        emit_json(verdict.as_json())
    if not verdict.ok:
        raise CertificateError(f"certificate {path} does not verify: {verdict.reason}")
    if not as_json:
        click.echo(
            f"certificate {verdict.certificate_id}: {verdict.reason} (key {verdict.signing_key_id})"
        )


@certificate.command("get")
@click.argument("request_id")
@_out
@json_option
@click.pass_context
def certificate_get(ctx: click.Context, request_id: str, out: Path | None, as_json: bool) -> None:
    """The certificate of an erasure request, from control.certificates. Needs audit.read in its
    workspace."""
    settings = get_settings(ctx)

    async def go() -> dict[str, Any]:
        async with ErasureDirectory(settings) as d:
            cert = d.certificates.get(request_id)
            request = d.get(request_id)
        ws = (cert or request or {}).get("workspace_id")
        if ws is None:
            raise ControlError(f"no erasure request {request_id}")
        await authorize(settings, ws, Permission.AUDIT_READ, action="certificate.read")
        if cert is None:
            raise ControlError(f"erasure request {request_id} has no certificate yet (pending)")
        return to_json(cert)

    doc = run(go())
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if out is not None:
        out.write_text(text)
        click.echo(f"certificate {doc['certificate_id']} -> {out}", err=as_json)
    if as_json or out is None:
        click.echo(text, nl=False)


@certificate.command("list")
@click.option("--workspace", "workspace_id", default=None, help="Only this workspace's requests.")
@json_option
@click.pass_context
def certificate_list(ctx: click.Context, workspace_id: str | None, as_json: bool) -> None:
    """Erasure requests and whether each is certified. With a token, --workspace is required
    (audit.read there)."""
    settings = get_settings(ctx)

    async def go() -> list[dict[str, Any]]:
        if workspace_id is not None:
            await authorize(
                settings, workspace_id, Permission.AUDIT_READ, action="certificate.read"
            )
        elif presented_token(settings) is not None:
            raise ControlError("--workspace is required when acting with a token")
        async with ErasureDirectory(settings) as d:
            out = []
            for r in d.requests():
                if workspace_id is not None and r["workspace_id"] != workspace_id:
                    continue
                cert = d.certificates.get(r["request_id"])
                out.append({
                    "request_id": r["request_id"], "kind": r["kind"],
                    "workspace_id": r["workspace_id"], "requested_by": r["requested_by"],
                    "requested_at": r["requested_at"].isoformat(),
                    "certificate_id": cert["certificate_id"] if cert else None,
                    "status": "certified" if cert else "pending",
                })  # fmt: skip
            return out

    rows = run(go())
    if as_json:
        emit_json(rows)
        return
    cols = ["request_id", "kind", "workspace_id", "requested_by", "requested_at", "status"]
    emit_table("erasure requests", cols, [[r[c] for c in cols] for r in rows])
