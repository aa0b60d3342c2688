"""The one error tree of the ``streams`` package.

Every error a processor raises on a *record* carries a short machine-readable ``reason`` that
becomes the dead-letter record's reason and a metric label.
"""

from __future__ import annotations


class StreamError(Exception):
    reason: str = "stream_error"
    retriable: bool = False


class InvalidRecord(StreamError):
    """The record decoded but violates the contract (missing call start, bad numbers, ...)."""

    reason = "invalid_record"


class UndecodableRecord(StreamError):
    reason = "undecodable"


class UnknownWorkspace(StreamError):
    """No policy exists for the record's workspace (even after syncing the control view)."""

    reason = "unknown_workspace"


class WorkspaceDeleted(StreamError):
    reason = "workspace_deleted"
