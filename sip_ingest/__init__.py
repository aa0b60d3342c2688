"""The SIP ingest node (SIP UAS / SIPREC SRS, RTP, SRTP, digest auth) — see issue 3.

It will publish ``ingest.metadata`` (CallEvent), ``ingest.audio`` (AudioChunk) and
``ingest.transcript`` (TranscriptSegment) as defined in ``schemas/``.
"""
