"""Publishing ingest records to Kafka: bounded queue, disk journal for outages, drop accounting.

See :mod:`sip_ingest.publish.publisher` for the guarantees and :mod:`sip_ingest.publish.journal`
for the on-disk format and fsync policy.
"""

from sip_ingest.publish.errors import JournalError, JournalFull, PublishError
from sip_ingest.publish.framing import Record
from sip_ingest.publish.journal import Corruption, Journal, JournalEntry, JournalPosition
from sip_ingest.publish.metrics import DROP_REASONS, IngestMetrics
from sip_ingest.publish.publisher import Publisher, PublisherOptions, PublisherStatus

__all__ = [
    "DROP_REASONS",
    "Corruption",
    "IngestMetrics",
    "Journal",
    "JournalEntry",
    "JournalError",
    "JournalFull",
    "JournalPosition",
    "PublishError",
    "Publisher",
    "PublisherOptions",
    "PublisherStatus",
    "Record",
]
