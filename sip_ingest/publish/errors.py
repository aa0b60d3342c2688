"""Errors of the publishing path.

``publish()`` itself never raises into the media loop: it counts a drop instead. These errors
travel between the journal and the publisher, and reach callers only from ``start()`` (a journal
directory that cannot be opened is a configuration problem the operator must see at boot).
"""

from __future__ import annotations


class PublishError(Exception):
    """Root of the errors this package raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class JournalError(PublishError):
    """The journal cannot be opened or written (permissions, I/O error, in use elsewhere)."""


class JournalFull(JournalError):
    """Appending would exceed ``journal_max_bytes``; the record was not written.

    Distinct from :class:`JournalError` because it is the one expected way to lose audio: the
    caller counts it as a drop with reason ``journal_full``. Retriable: space comes back as the
    journal drains.
    """

    retriable = True


class JournalKeyError(JournalError):
    """The journal key is missing, unusable, or not the key the journal's segments were
    encrypted with.

    Never corruption: the segments are kept untouched, and the journal opens (and replays them)
    once the right key file is back. Not retriable: an operator must restore the key.
    """
