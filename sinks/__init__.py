"""Sinks: where sealed records come to rest (ClickHouse now; object storage and SIEMs next).

Every sink has the quixstreams shape — ``add()`` buffers, ``flush()`` makes the buffer durable or
raises — and states its delivery guarantee in its docstring. The stream checkpoint acknowledges
Kafka offsets only after ``flush()`` returned, so a crash replays, and idempotent writes make the
replay harmless.
"""
