"""The one error tree of the ``schemas`` package.

Stages catch :class:`SchemaError` to dead-letter a message instead of crashing the consumer loop;
``retriable`` tells them whether waiting could help. None of these errors is retriable: the same
bytes or the same record will fail the same way, so the only sensible reaction is to park the
message (see the ``DeadLetter`` schema) and move on.

Messages name the schema, the field path and the Python type involved, never the offending value:
records carry phone numbers and transcript text, and error messages end up in logs and in
``DeadLetter.reason``.
"""

from __future__ import annotations


class SchemaError(Exception):
    """Root of every error the ``schemas`` package raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class SchemaDefinitionError(SchemaError):
    """A ``.avsc`` file (current or historical) is invalid or inconsistent with the others.

    Raised when the codec loads, i.e. at process start-up, so a broken contract stops a stage
    before it consumes anything rather than when the first message arrives.
    """


class SchemaEncodeError(SchemaError):
    """A record does not fit its schema (wrong type, missing required field, unknown field)."""


class SchemaDecodeError(SchemaError):
    """Bytes are not a single-object-encoded message this codec can read as the expected type.

    Covers a short or unframed message, an unknown writer fingerprint (typically a producer
    deployed with a newer schema before this consumer), a message of another record type, and a
    truncated, corrupt or over-long body.
    """
