"""The local dev stack the project starts itself: Kafka (KRaft), SeaweedFS (S3)
and rsyslog (syslog over TLS, the SIEM stand-in) on loopback.

``callvault dev up | down | status`` is the user-facing side (:mod:`callvault.cli.dev`); the
orchestration is :mod:`callvault.devstack.stack`. Every service is a pid-file managed background
process under ``settings.home`` (:mod:`callvault.devstack.process`), so ``down`` stops only what
``up`` started. Importing this package starts nothing and imports no client library.
"""
