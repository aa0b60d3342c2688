"""SIEM sinks for ``audit.events``: syslog over TLS (RFC 5425), Splunk HEC, OCSF."""
