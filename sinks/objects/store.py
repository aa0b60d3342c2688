"""The region's bucket, as the recordings sink and the purge use it (boto3 against any S3).

boto3 is blocking, so every call runs on a worker thread; the event loop (and with it the Kafka
heartbeats) never waits on the network. Errors are mapped onto the sinks' error tree once, here:
network failures, throttling and 5xx are :class:`~sinks.errors.SinkUnavailable` (the stream backs
off and retries the same batch), any other refusal is :class:`~sinks.errors.SinkRejected`, and a
lost ``If-None-Match: *`` race is :class:`ObjectExists` — the object is already there, which for
a deterministic key means the work is already done.

One store is bound to one bucket, ``{s3.bucket_prefix}{region}``: a worker cannot address another
region's bucket through it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from callvault.settings import Settings
from sinks.errors import SinkError, SinkRejected, SinkUnavailable

T = TypeVar("T")

#: S3 refuses parts below 5 MiB except the last one.
MIN_PART_SIZE = 5 * 1024 * 1024
_DELETE_BATCH = 1000  # DeleteObjects' limit
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
     "RequestTimeTooSkewed", "OperationAborted"}
)  # fmt: skip


class ObjectExists(SinkError):
    """A conditional create found the key taken: the object was written before."""

    retriable = False


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class ObjectVersion:
    key: str
    version_id: str | None  # "null" for an object written while versioning was off
    size: int
    delete_marker: bool = False


def bucket_name(settings: Settings, region: str | None = None) -> str:
    return f"{settings.s3.bucket_prefix}{region or settings.region}"


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client from settings: path-style, checksums only when required (SeaweedFS and
    MinIO take them, but they cost a second pass over each body), a short connect timeout so an
    outage is noticed quickly, and no retries of its own — the stream's backoff owns retrying."""
    config = botocore.config.Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=3,
        read_timeout=30,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3",
        endpoint_url=settings.s3.endpoint,
        aws_access_key_id=settings.s3.access_key,
        aws_secret_access_key=settings.s3.secret_key.get_secret_value(),
        region_name=settings.s3.signing_region,
        config=config,
    )


def classify(exc: BaseException, what: str) -> SinkError:
    """The sinks' view of a boto3 failure (see the module docstring)."""
    if isinstance(exc, SinkError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = f"{what}: S3 {status} {code}: {err.get('Message', '')}".strip()
        if status == 412 or code == "PreconditionFailed":
            return ObjectExists(message)
        if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
            return SinkUnavailable(message)
        return SinkRejected(message)
    if isinstance(exc, botocore.exceptions.BotoCoreError | OSError):
        return SinkUnavailable(f"{what}: S3 unreachable: {type(exc).__name__}: {exc}")
    return SinkRejected(f"{what}: {type(exc).__name__}: {exc}")


class ObjectStore:
    """Async facade over one bucket."""

    def __init__(self, settings: Settings, region: str | None = None) -> None:
        self.region = region or settings.region
        self.bucket = bucket_name(settings, self.region)
        #: every key lives under the deployment's namespace (``s3.key_prefix``, usually empty)
        self._ns = settings.s3.key_prefix
        self._client = s3_client(settings)

    def __repr__(self) -> str:
        return f"ObjectStore(bucket={self.bucket!r})"

    @property
    def namespace(self) -> str:
        """The deployment's key prefix (``s3.key_prefix``), for rules that name full keys."""
        return self._ns

    async def _run(self, what: str, fn: Callable[[], T]) -> T:
        def call() -> T:
            try:
                return fn()
            except Exception as exc:
                raise classify(exc, what) from exc

        return await asyncio.to_thread(call)

    # -- single objects

    async def put(
        self,
        key: str,
        body: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "application/octet-stream",
        create_only: bool = False,
    ) -> None:
        """One small object. ``create_only`` sends ``If-None-Match: *``: raises
        :class:`ObjectExists` instead of replacing an object written before."""
        args: dict[str, Any] = {
            "Bucket": self.bucket, "Key": self._ns + key, "Body": body, "ContentType": content_type,
            "Metadata": dict(metadata or {}), "ContentMD5": _md5_b64(body),
        }  # fmt: skip
        if create_only:
            args["IfNoneMatch"] = "*"
        await self._run(f"put {key}", lambda: self._client.put_object(**args))

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self.get_blocking, key)

    def get_blocking(self, key: str) -> bytes:
        """The whole object, on the calling thread (for code already running on a thread)."""
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self._ns + key)["Body"]
            with body:
                data: bytes = body.read()
        except Exception as exc:
            raise classify(exc, f"get {key}") from exc
        return data

    async def head(self, key: str) -> dict[str, Any] | None:
        """The object's user metadata and size, or None when it does not exist."""

        def head() -> dict[str, Any] | None:
            try:
                r = self._client.head_object(Bucket=self.bucket, Key=self._ns + key)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return None
                raise
            return {"metadata": r.get("Metadata", {}), "size": r["ContentLength"]}

        return await self._run(f"head {key}", head)

    def open_stream(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Blocking: the object's bytes chunk by chunk (run it on a thread)."""
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self._ns + key)["Body"]
        except Exception as exc:
            raise classify(exc, f"get {key}") from exc
        with body:
            yield from body.iter_chunks(chunk_size)

    # -- listing and deleting

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        def listing() -> list[ObjectInfo]:
            out: list[ObjectInfo] = []
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._ns + prefix
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    key = item["Key"][len(self._ns) :]
                    out.append(ObjectInfo(key, item["Size"], item["LastModified"]))
            return out

        return await self._run(f"list {prefix}", listing)

    async def prefixes(self, prefix: str) -> list[str]:
        """The "directories" right below ``prefix`` (keys up to the next '/')."""

        def listing() -> list[str]:
            out: list[str] = []
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._ns + prefix, Delimiter="/"
            )
            for page in pages:
                out += [p["Prefix"][len(self._ns) :] for p in page.get("CommonPrefixes", ())]
            return out

        return await self._run(f"list {prefix}", listing)

    async def delete(self, keys: Sequence[str]) -> None:
        await self._delete_objects([{"Key": self._ns + k} for k in keys])

    async def _delete_objects(self, objects: list[dict[str, str]]) -> None:
        for i in range(0, len(objects), _DELETE_BATCH):
            batch = objects[i : i + _DELETE_BATCH]

            def delete(batch: list[dict[str, str]] = batch) -> None:
                r = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                if r.get("Errors"):
                    first = r["Errors"][0]
                    raise SinkUnavailable(
                        f"delete: {len(r['Errors'])} objects not deleted, first "
                        f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                    )

            await self._run("delete", delete)

    async def list_versions(self, prefix: str) -> list[ObjectVersion]:
        """Every version and delete marker under ``prefix`` (an unversioned bucket lists each
        object once, with version id "null")."""

        def listing() -> list[ObjectVersion]:
            out: list[ObjectVersion] = []
            pages = self._client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=self._ns + prefix
            )
            for page in pages:
                for item in page.get("Versions", ()):
                    out.append(ObjectVersion(
                        item["Key"][len(self._ns) :], item.get("VersionId"), item.get("Size", 0)
                    ))  # fmt: skip
                for item in page.get("DeleteMarkers", ()):
                    out.append(ObjectVersion(
                        item["Key"][len(self._ns) :], item.get("VersionId"), 0, True
                    ))  # fmt: skip
            return out

        return await self._run(f"list versions {prefix}", listing)

    async def purge_prefix(self, prefix: str) -> list[ObjectVersion]:
        """Delete every version and delete marker under ``prefix`` and prove it by listing
        again; returns what was there. What an erasure needs: on a versioned bucket a plain
        delete only stacks a delete marker on the data, which stays readable by version id."""
        found = await self.list_versions(prefix)
        await self._delete_objects([
            {"Key": self._ns + v.key, **({"VersionId": v.version_id} if v.version_id else {})}
            for v in found
        ])  # fmt: skip
        left = await self.list_versions(prefix)
        if left:
            raise SinkUnavailable(f"purge {prefix}: {len(left)} versions still listed")
        return found

    async def delete_prefix(self, prefix: str) -> list[ObjectInfo]:
        """Delete everything under ``prefix`` and prove it by listing again; returns what was
        there. Raises :class:`SinkUnavailable` if anything is still listed afterwards."""
        found = await self.list_objects(prefix)
        await self.delete([o.key for o in found])
        left = await self.list_objects(prefix)
        if left:
            raise SinkUnavailable(f"delete {prefix}: {len(left)} objects still listed")
        return found

    # -- large objects

    async def upload_file(
        self,
        key: str,
        path: Path,
        *,
        metadata: Mapping[str, str],
        content_type: str,
        part_size: int = 8 * 1024 * 1024,
    ) -> None:
        """Multipart upload of a local file under ``If-None-Match: *`` (parts carry Content-MD5).

        Raises :class:`ObjectExists` when the key was completed before (by an earlier attempt or
        another worker); the unfinished upload is aborted either way, so no parts are left.
        """
        part_size = max(part_size, MIN_PART_SIZE)

        def upload() -> None:
            c, full = self._client, self._ns + key
            upload_id = c.create_multipart_upload(
                Bucket=self.bucket, Key=full, Metadata=dict(metadata), ContentType=content_type
            )["UploadId"]
            try:
                parts = []
                with path.open("rb") as fh:
                    number = 1
                    while True:
                        data = fh.read(part_size)
                        if not data and number > 1:
                            break
                        r = c.upload_part(
                            Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number,
                            Body=data, ContentMD5=_md5_b64(data),
                        )  # fmt: skip
                        parts.append({"PartNumber": number, "ETag": r["ETag"]})
                        number += 1
                        if len(data) < part_size:
                            break
                c.complete_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id,
                    MultipartUpload={"Parts": parts}, IfNoneMatch="*",
                )  # fmt: skip
            except BaseException:
                # best effort: the bucket's AbortIncompleteMultipartUpload rule is the backstop
                with contextlib.suppress(Exception):
                    c.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
                raise

        await self._run(f"upload {key}", upload)

    # -- bucket configuration

    async def put_lifecycle(self, rules: list[dict[str, Any]]) -> None:
        await self._run(
            "put lifecycle",
            lambda: self._client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": rules}
            ),
        )

    async def get_lifecycle(self) -> list[dict[str, Any]]:
        def get() -> list[dict[str, Any]]:
            try:
                r = self._client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
                    return []
                raise
            rules: list[dict[str, Any]] = r.get("Rules", [])
            return rules

        return await self._run("get lifecycle", get)

    def close(self) -> None:
        self._client.close()


def _md5_b64(data: bytes) -> str:
    # Content-MD5 is an integrity check of the transfer (S3 refuses a corrupted body), not security
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
