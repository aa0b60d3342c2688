"""Control plane state carried on compacted Kafka topics (workspaces; later trunks, keys, erasure).

Every process that needs the state (stream workers, ingest nodes, the CLI) keeps a live view by
reading the compacted topic from the beginning and tailing it — no separate database to keep in
sync, and a change reaches every reader as fast as Kafka delivers it.
"""
