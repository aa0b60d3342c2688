"""ClickHouse analytics: the same code drives an embedded chDB (``chdb:///dir``) or a server."""
