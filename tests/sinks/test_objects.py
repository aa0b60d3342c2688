"""The pure parts of the object sink: where keys go, how staged records are framed, how S3
errors are classified, and which lifecycle rules a workspace's retention becomes."""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.exceptions
import pytest

from callvault.control.workspaces import WorkspacePolicy
from sinks.errors import SinkRejected, SinkUnavailable
from sinks.objects import layout
from sinks.objects.store import ObjectExists, classify
from sinks.recordings.staging import EndedCall, frame, unframe
from streams.retention import lifecycle_rules

STARTED = datetime(2026, 11, 26, 23, 59, 59, tzinfo=UTC)


def test_a_call_has_one_deterministic_prefix_dated_by_its_start():
    assert layout.artifact_key("acme", "c-1", STARTED, "recording") == (
        "recordings/acme/2026/11/26/c-1/recording.mp3.cvs"
    )
    assert layout.manifest_key("acme", "c-1", STARTED).startswith(
        layout.call_prefix("acme", "c-1", STARTED)
    )
    assert layout.staged_key("acme", "c-1", "audio", 2, 1234) == (
        "staging/acme/c-1/audio/002-00000000000000001234"
    )
    assert layout.parse_staging_prefix("staging/acme/c-1/") == ("acme", "c-1")
    assert layout.parse_staging_prefix("staging/acme/") is None


@pytest.mark.parametrize("bad", ["../other", "a/b", "..", "", "x" * 200, "ws\n", ".hidden"])
def test_ids_that_could_address_another_prefix_are_refused(bad):
    with pytest.raises(SinkRejected):
        layout.call_prefix(bad, "c-1", STARTED)
    with pytest.raises(SinkRejected):
        layout.staging_prefix("acme", bad)


def test_staged_records_are_framed_and_truncation_is_detected():
    values = [b"", b"a", bytes(range(256)) * 40]
    body = frame(values)
    assert unframe(body) == values
    with pytest.raises(SinkRejected, match="truncated"):
        unframe(body[:-1])
    with pytest.raises(SinkRejected, match="truncated"):
        unframe(body[:2])


def test_the_end_marker_round_trips():
    ended = EndedCall("acme", "c-1", "eu", STARTED, STARTED, 1000, STARTED, {"CALLER": 3}, STARTED)
    assert EndedCall.from_json(ended.to_json()) == ended


def _client_error(status: int, code: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_client_error(503, "SlowDown"), SinkUnavailable),
        (_client_error(500, "InternalError"), SinkUnavailable),
        (_client_error(400, "RequestTimeout"), SinkUnavailable),
        (_client_error(412, "PreconditionFailed"), ObjectExists),
        (_client_error(403, "AccessDenied"), SinkRejected),
        (_client_error(400, "EntityTooSmall"), SinkRejected),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), SinkUnavailable),
        (ConnectionResetError(), SinkUnavailable),
    ],
)
def test_s3_errors_become_retry_or_refusal(exc, kind):
    got = classify(exc, "put k")
    assert type(got) is kind
    assert got.retriable is (kind is SinkUnavailable)


def test_lifecycle_rules_follow_each_workspace_retention_within_the_namespace():
    policies = {
        "acme": WorkspacePolicy("acme", "A", "eu", retention_days=30),
        "globex": WorkspacePolicy("globex", "G", "eu", retention_days=7),
    }
    rules = {r["ID"]: r for r in lifecycle_rules("ns/", policies)}
    assert rules["cv:ns/recordings:acme"]["Filter"] == {"Prefix": "ns/recordings/acme/"}
    assert rules["cv:ns/recordings:acme"]["Expiration"] == {"Days": 31}
    assert rules["cv:ns/staging:globex"]["Expiration"] == {"Days": 8}
    assert rules["cv:ns/abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1
    }
    assert all(r["Filter"]["Prefix"].startswith("ns/") for r in rules.values())
