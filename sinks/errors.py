"""The one error tree of the ``sinks`` package."""

from __future__ import annotations


class SinkError(Exception):
    """A sink could not make its buffer durable.

    ``retriable`` tells the stream loop whether to back off and try the same batch again (store
    down, timeout) or to dead-letter the records (the store rejected them as invalid).
    """

    retriable: bool = True

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class SinkUnavailable(SinkError):
    retriable = True


class SinkRejected(SinkError):
    retriable = False


class ResidencyViolation(SinkError):
    """A record of another region reached a region-bound sink; it is refused, never written."""

    retriable = False
