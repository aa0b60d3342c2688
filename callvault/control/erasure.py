"""Erasure requests and their certificates on Kafka: the erasure registry.

``callvault erase`` writes an ``ErasureRequest`` to the compacted ``control.erasure`` topic; the
worker of the workspace's home region carries it out (it owns that region's bucket and analytics
store: :mod:`streams.erasure`) and writes the signed ``DeletionCertificate`` to
``control.certificates`` under the same request id. Both topics are compacted and keyed by
request id, so the registry of every erasure ever requested, and its proof, stays readable
(``callvault certificate get``), and a worker that crashed mid-erasure finds the request again
without a certificate and runs it to the end.

A subject request carries the keyed hash of the number (as stored in ``calls``), never the
number itself: the registry must not become a list of the people who asked to be forgotten.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, Self

from callvault.control.directory import ControlDirectory
from callvault.control.view import CompactedView
from callvault.errors import ControlError
from callvault.kafka_client import kafka_options
from callvault.settings import Settings
from callvault.topics import Topics

ErasureKind = Literal["WORKSPACE", "SUBJECT"]


def erasure_view(settings: Settings) -> CompactedView[dict[str, Any]]:
    return CompactedView(
        kafka_options(settings), Topics(settings).name("control.erasure"), "ErasureRequest",
        dict, request_timeout_s=settings.kafka.request_timeout_s,
    )  # fmt: skip


def certificate_view(settings: Settings) -> CompactedView[dict[str, Any]]:
    return CompactedView(
        kafka_options(settings), Topics(settings).name("control.certificates"),
        "DeletionCertificate", dict, request_timeout_s=settings.kafka.request_timeout_s,
    )  # fmt: skip


def subject_hash(settings: Settings, workspace_id: str, phone: str) -> str:
    """The subject's number as ``calls`` stores it (keyed, per-workspace hash)."""
    from streams.metadata import normalise_number, number_hash

    if len(normalise_number(phone).lstrip("+")) < 5:
        raise ControlError(f"{phone!r} is not a phone number (E.164, e.g. +442071838750)")
    return number_hash(settings.hash_pepper.get_secret_value().encode(), workspace_id, phone)


class ErasureDirectory(ControlDirectory[dict[str, Any]]):
    """Write erasure requests; read them and the certificates that complete them."""

    schema = "ErasureRequest"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, erasure_view(settings))
        self.certificates = certificate_view(settings)

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        try:
            await self.certificates.start()
        except BaseException:
            await super().__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.certificates.stop()
        await super().__aexit__(*exc)

    async def request(
        self,
        kind: ErasureKind,
        workspace_id: str,
        *,
        requested_by: str,
        subject_phone_hash: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        if (kind == "SUBJECT") != (subject_phone_hash is not None):
            raise ControlError("a subject erasure needs the subject's number, and only it does")
        request_id = str(uuid.uuid4())
        record = {
            "request_id": request_id,
            "kind": kind,
            "workspace_id": workspace_id,
            "subject_phone_hash": subject_phone_hash,
            "requested_by": requested_by,
            "requested_at": datetime.now(UTC),
            "reason": reason,
        }
        await self._put(request_id, record)
        return record

    def get(self, request_id: str) -> dict[str, Any] | None:
        return self._view.get(request_id)

    def requests(self) -> list[dict[str, Any]]:
        return sorted(self._view.items().values(), key=lambda r: r["requested_at"])

    async def wait_certificate(self, request_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The certificate of ``request_id`` once the worker issued it; None on timeout."""
        return await self.certificates.wait_for_key(request_id, timeout_s)
