"""Typed settings shared by the CLI, the stream workers, the sinks, the ingest node and the tests.

Sources, strongest first: keyword overrides, ``CALLVAULT_*`` environment variables (nested keys
joined with ``__``: ``CALLVAULT_KAFKA__BOOTSTRAP``), a TOML file (``--config`` or
``CALLVAULT_CONFIG``), then defaults. Defaults describe the local dev stack on loopback, so a
fresh clone works with no configuration; ``environment = "production"`` refuses the
well-known dev secrets instead of silently running with them.

Secrets are ``SecretStr``: they print as ``**********`` in reprs, logs and ``--json`` dumps.
"""

from __future__ import annotations

import json
import os
import socket
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from callvault.errors import SettingsError

DEV_S3_SECRET = "callvault-dev-s3-secret-not-for-production"  # noqa: S105 (documented dev default)
DEV_QUERY_TOKEN = "callvault-dev-query-token"  # noqa: S105
DEV_HASH_PEPPER = "callvault-dev-hash-pepper"
DEV_INGEST_TOKEN = "callvault-dev-ingest-token"  # noqa: S105
DEV_NONCE_SECRET = "callvault-dev-nonce-secret"  # noqa: S105
DEV_CLICKHOUSE_WORKSPACE_SECRET = "callvault-dev-clickhouse-workspace-secret"  # noqa: S105

DEFAULT_REGIONS = ("eu", "na", "apac")

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("callvault_config_file", default=None)


def _default_home() -> Path:
    return Path(os.environ.get("CALLVAULT_HOME", Path.home() / ".callvault"))


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "callvault"


class KafkaSettings(BaseModel):
    bootstrap: str = "127.0.0.1:19092"
    #: Prepended to every topic name. Tests give each test its own prefix; production leaves it
    #: empty. Kept in one place so no code builds topic names by hand.
    topic_prefix: str = ""
    ingest_retention_hours: int = Field(24, ge=1, le=24 * 30)
    request_timeout_s: float = Field(30.0, gt=0)
    #: Clients speak TLS to the broker and verify it (host name included) against ``ca_file``,
    #: default the local stack's CA ``<home>/tls/ca.pem``; the dev and test brokers are TLS-only.
    #: Raw call audio crosses this link: production refuses ``tls = false``.
    tls: bool = True
    ca_file: Path | None = None
    #: Optional client certificate (mutual TLS): a PEM with the key and the certificate chain.
    client_cert_file: Path | None = None

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_topic_safe(cls, v: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not set(v) <= allowed:
            raise ValueError("may contain only letters, digits, '.', '_' and '-'")
        return v


class S3Settings(BaseModel):
    endpoint: str = "http://127.0.0.1:18333"
    access_key: str = "callvault-dev"
    secret_key: SecretStr = SecretStr(DEV_S3_SECRET)
    #: One bucket per region: ``{bucket_prefix}{region}``; a sink only ever opens its own.
    bucket_prefix: str = "callvault-recordings-"
    #: Namespace for every key Callvault writes (like ``kafka.topic_prefix``): lets several
    #: deployments, or tests, share a bucket without seeing each other's objects.
    key_prefix: str = ""
    #: The SigV4 signing region; S3-compatible stores (SeaweedFS, MinIO) accept us-east-1.
    signing_region: str = "us-east-1"


class ClickHouseSettings(BaseModel):
    #: ``chdb:///path`` selects the embedded engine (one owning process); ``http(s)://user:pw@host``
    #: a ClickHouse server. The DSN may carry a password, hence a secret.
    dsn: SecretStr | None = None
    database: str = "callvault"
    #: With a server DSN, each workspace's own database user gets a password derived from this
    #: (see sinks/clickhouse/isolation.py), so nothing per workspace has to be stored.
    workspace_secret: SecretStr = SecretStr(DEV_CLICKHOUSE_WORKSPACE_SECRET)

    @field_validator("database")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not v.replace("_", "").isalnum() or v[0].isdigit():
            raise ValueError("must be a plain identifier (letters, digits, '_')")
        return v


class WorkerSettings(BaseModel):
    """The stream worker: its web endpoint (metrics, analytics queries) and batching."""

    web_host: str = "127.0.0.1"
    web_port: int = Field(16066, ge=1, le=65535)
    query_token: SecretStr = SecretStr(DEV_QUERY_TOKEN)
    batch_max: int = Field(500, ge=1, le=100_000)
    batch_within_s: float = Field(0.2, gt=0, le=60)
    commit_interval_s: float = Field(1.0, gt=0, le=60)
    #: How long the group waits for a silent (crashed) member before moving its partitions to a
    #: live one: the pause a SIGKILLed worker causes after restart. Kafka's minimum is 6 s.
    session_timeout_s: float = Field(10.0, ge=6, le=300)
    #: Sink retries back off exponentially up to this ceiling and never give up on a transient
    #: error: consumption pauses instead of committing past unwritten data.
    retry_max_backoff_s: float = Field(10.0, gt=0)
    #: How often the worker enforces current retention (shreds expired calls' keys, deletes
    #: their rows); see streams/retention.py.
    retention_sweep_s: float = Field(300.0, gt=0)


class IngestSettings(BaseModel):
    """The SIP ingest node. Names match docker-compose.yml's CALLVAULT_INGEST__* variables."""

    node_id: str = Field(default_factory=socket.gethostname)
    #: Listen address for SIP (UDP+TCP on sip_port, TLS on tls_port). Loopback by default.
    sip_host: str = "127.0.0.1"
    sip_port: int = Field(5060, ge=1, le=65535)
    tcp_enabled: bool = True
    tls_port: int = Field(5061, ge=1, le=65535)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: Address put in Contact and SDP c= lines; what the PBX sends media to.
    advertised_host: str = "127.0.0.1"
    rtp_port_min: int = Field(20000, ge=1024, le=65535)
    rtp_port_max: int = Field(20999, ge=1024, le=65535)
    realm: str = "callvault"
    #: Signs digest nonces so any node sharing it can verify them (stateless nonces).
    nonce_secret: SecretStr = SecretStr(DEV_NONCE_SECRET)
    nonce_ttl_s: float = Field(300.0, gt=0)
    #: Challenge order. RFC 8760 puts SHA-256 first; some PBXs (and sipp) only answer the first
    #: challenge and only know MD5, so the order is a deployment choice.
    digest_algorithms: tuple[Literal["SHA-256", "MD5"], ...] = ("SHA-256", "MD5")
    #: Failed digest attempts allowed per source address per minute before 403s without a
    #: challenge; every failure is an audit event either way.
    auth_failures_per_minute: int = Field(10, ge=1)
    #: Session timers (RFC 4028): the interval we prefer, and the smallest we accept (the RFC's
    #: floor is 90 s; only tests go lower). Calls whose signalling stops refreshing are ended.
    session_expires_s: int = Field(1800, ge=1)
    session_min_se_s: int = Field(90, ge=1)
    #: Hard cap on a call's length, for peers that keep media and refreshes alive by mistake.
    max_call_s: float = Field(4 * 3600, gt=0)
    rtp_inactivity_s: float = Field(30.0, gt=0)
    chunk_ms: int = Field(1000, ge=20, le=10_000)
    #: Ring time before the node answers an INVITE (a caller can CANCEL meanwhile).
    answer_delay_ms: int = Field(0, ge=0, le=60_000)
    #: Records waiting for Kafka; beyond it they spool to the journal on disk.
    queue_max: int = Field(20_000, ge=100)
    journal_dir: Path | None = None
    journal_max_bytes: int = Field(512 * 1024 * 1024, ge=1024 * 1024)
    #: The journal's AES-256-GCM key (32 raw bytes, mode 0600), kept outside ``journal_dir`` so a
    #: copy of the journal is not a copy of the audio; default ``<home>/keys/ingest-journal.key``
    #: (:attr:`Settings.ingest_journal_key_file`). Created on first use. Losing it while records
    #: are spooled makes the node refuse to start until it is restored (they are not deleted).
    journal_key_file: Path | None = None
    #: The voice agent posts transcripts, tool calls and summaries here (and /metrics).
    api_host: str = "127.0.0.1"
    api_port: int = Field(16070, ge=1, le=65535)
    api_token: SecretStr = SecretStr(DEV_INGEST_TOKEN)

    @model_validator(mode="after")
    def _port_range(self) -> IngestSettings:
        if self.rtp_port_max - self.rtp_port_min < 2:
            raise ValueError("rtp_port_max must be at least rtp_port_min + 2")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.session_expires_s < self.session_min_se_s:
            raise ValueError("session_expires_s must be at least session_min_se_s")
        return self


class KeysSettings(BaseModel):
    """The master key of the envelope hierarchy (see :mod:`callvault.crypto`).

    ``local``: a 0600 JSON key file (dev and single-machine installs), by default
    ``<home>/keys/master.json`` (:attr:`Settings.master_key_file`). Outside production it is
    created on first use; in production a missing file is an error. ``aws-kms``: the master key
    never leaves KMS; ``kms_key_id`` is a key id, ARN or alias.
    """

    provider: Literal["local", "aws-kms"] = "local"
    local_key_file: Path | None = None
    kms_key_id: str | None = None
    kms_region: str | None = None

    @field_validator("local_key_file", "kms_key_id", "kms_region", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        # docker compose passes an unset variable through as "".
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _kms_needs_a_key(self) -> KeysSettings:
        if self.provider == "aws-kms" and self.kms_key_id is None:
            raise ValueError("provider 'aws-kms' needs kms_key_id (CALLVAULT_KEYS__KMS_KEY_ID)")
        return self


class SiemSettings(BaseModel):
    """Fan-out of ``audit.events`` to SIEMs (:mod:`streams.siem`): syslog over TLS (RFC 5425),
    Splunk HEC, and the ``siem.ocsf`` topic (OCSF JSON for SIEMs that read Kafka). At-least-once
    to each; every rendering carries the audit event id so the SIEM can drop duplicates."""

    syslog_enabled: bool = False
    syslog_host: str = "127.0.0.1"
    syslog_port: int = Field(6514, ge=1, le=65535)
    syslog_format: Literal["cef", "json"] = "cef"
    #: CA that signed the syslog server's certificate; unset: the system trust store.
    syslog_ca_file: Path | None = None
    #: Optional client certificate (mutual TLS): a PEM with the certificate chain, and the key
    #: either in the same PEM or in ``syslog_client_key_file``.
    syslog_client_cert_file: Path | None = None
    syslog_client_key_file: Path | None = None
    hec_enabled: bool = False
    #: Base URL of the HEC input, e.g. ``https://splunk.example:8088``; production needs https.
    hec_url: str | None = None
    hec_token: SecretStr | None = None
    #: CA that signed the HEC server's certificate; unset: the system trust store.
    hec_ca_file: Path | None = None
    ocsf_topic_enabled: bool = True

    @field_validator(
        "syslog_ca_file", "syslog_client_cert_file", "syslog_client_key_file", "hec_ca_file",
        "hec_url", "hec_token", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        # docker compose passes an unset variable through as "".
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("hec_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL")
        return v

    @model_validator(mode="after")
    def _destinations_complete(self) -> SiemSettings:
        if self.syslog_client_key_file is not None and self.syslog_client_cert_file is None:
            raise ValueError("syslog_client_key_file needs syslog_client_cert_file")
        if self.hec_enabled and (self.hec_url is None or self.hec_token is None):
            raise ValueError("hec_enabled needs hec_url and hec_token")
        return self

    @property
    def any_enabled(self) -> bool:
        return self.syslog_enabled or self.hec_enabled or self.ocsf_topic_enabled


class RecordingsSettings(BaseModel):
    """The recordings sink (:mod:`streams.recordings`): when a call counts as finished."""

    enabled: bool = True
    #: How often the worker tries to finish calls that ended.
    poll_s: float = Field(1.0, gt=0, le=60)
    #: Without per-leg chunk counts on the ENDED event: wait this long after it for stragglers.
    settle_s: float = Field(5.0, ge=0, le=3600)
    #: With chunk counts: finish with what arrived (gaps as silence) if chunks are still missing
    #: this long after the ENDED event.
    settle_timeout_s: float = Field(120.0, ge=0, le=86_400)
    #: A call whose ENDED event never comes (its ingest node died) is finished once nothing was
    #: staged for it for this long; above the longest silence a live call may have.
    orphan_after_s: float = Field(3600.0, gt=0)
    #: How often the staging area is rescanned for calls another worker left unfinished.
    rescan_s: float = Field(60.0, gt=0)
    part_size_mb: int = Field(8, ge=5, le=512)


class AuditSettings(BaseModel):
    """The audit chain (:mod:`callvault.audit_chain`): each region's worker hash-chains its
    audit events into ``audit.chain.<region>`` and signs every entry with an Ed25519 key.

    ``signing_key_file``: the private key (PEM, mode 0600), default
    ``<home>/keys/audit-signing.pem`` (:attr:`Settings.audit_signing_key_file`); created on first
    use outside production, in production a missing file is an error. ``public_key_file``: what
    ``callvault audit verify`` checks signatures with, default the private key's path + ``.pub``
    (:attr:`Settings.audit_public_key_file`); an auditor points it at their own pinned copy.
    """

    signing_key_file: Path | None = None
    public_key_file: Path | None = None

    @field_validator("signing_key_file", "public_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        # docker compose passes an unset variable through as "".
        return None if isinstance(v, str) and not v.strip() else v


class DevStackSettings(BaseModel):
    kafka_version: str = "4.1.1"
    kafka_port: int = Field(19092, ge=1, le=65535)
    kafka_controller_port: int = Field(19093, ge=1, le=65535)
    kafka_heap: str = "768m"
    s3_port: int = Field(18333, ge=1, le=65535)
    weed_master_port: int = Field(19333, ge=1, le=65535)
    weed_volume_port: int = Field(18080, ge=1, le=65535)
    weed_filer_port: int = Field(18888, ge=1, le=65535)
    weed_admin_port: int = Field(19646, ge=1, le=65535)
    #: rsyslog's RFC 5425 (syslog over TLS) listener, the stack's SIEM receiver.
    syslog_port: int = Field(16514, ge=1, le=65535)
    start_timeout_s: float = Field(90.0, gt=0)


def _loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CALLVAULT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    environment: Literal["dev", "test", "production"] = "dev"
    #: State of the local stack and embedded stores (pid files, data, chDB).
    home: Path = Field(default_factory=_default_home)
    #: Downloads (Kafka jars) live here, outside any repository.
    cache_dir: Path = Field(default_factory=_default_cache)
    regions: tuple[str, ...] = DEFAULT_REGIONS
    #: The region this process serves. Sinks are bound to it and refuse any other.
    region: str = "eu"
    default_retention_days: int = Field(90, ge=7, le=365)
    #: Keyed hash for caller numbers in analytics (lookups without storing the number).
    hash_pepper: SecretStr = SecretStr(DEV_HASH_PEPPER)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    #: Production refuses plaintext links to S3 and ClickHouse (and non-loopback plain-HTTP
    #: APIs): "encrypted between internal services". Names the links allowed in clear anyway,
    #: e.g. ("s3", "clickhouse") for containers on one private bridge network; every process
    #: logs the exception at start. Call content on those links is sealed either way.
    plaintext_links_allowed: tuple[Literal["s3", "clickhouse", "http-api"], ...] = ()

    kafka: KafkaSettings = KafkaSettings()
    s3: S3Settings = S3Settings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    worker: WorkerSettings = WorkerSettings()
    ingest: IngestSettings = IngestSettings()
    dev: DevStackSettings = DevStackSettings()
    keys: KeysSettings = KeysSettings()
    siem: SiemSettings = SiemSettings()
    recordings: RecordingsSettings = RecordingsSettings()
    audit: AuditSettings = AuditSettings()

    @model_validator(mode="after")
    def _region_known(self) -> Settings:
        if self.region not in self.regions:
            raise ValueError(f"region {self.region!r} is not one of regions {list(self.regions)}")
        return self

    @model_validator(mode="after")
    def _no_dev_secrets_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        for key, value, dev in (
            ("s3.secret_key", self.s3.secret_key, DEV_S3_SECRET),
            ("worker.query_token", self.worker.query_token, DEV_QUERY_TOKEN),
            ("hash_pepper", self.hash_pepper, DEV_HASH_PEPPER),
            ("ingest.api_token", self.ingest.api_token, DEV_INGEST_TOKEN),
            ("ingest.nonce_secret", self.ingest.nonce_secret, DEV_NONCE_SECRET),
            (
                "clickhouse.workspace_secret",
                self.clickhouse.workspace_secret,
                DEV_CLICKHOUSE_WORKSPACE_SECRET,
            ),
        ):
            if value.get_secret_value() == dev:
                raise ValueError(f"{key} still has the dev default; set it for production")
        if self.clickhouse.dsn is None:
            raise ValueError("clickhouse.dsn must be set in production")
        if not self.kafka.tls:
            raise ValueError("kafka.tls must be on in production: raw call audio crosses it")
        if self.siem.hec_url is not None and not self.siem.hec_url.startswith("https://"):
            raise ValueError("siem.hec_url must be https in production: the HEC token crosses it")
        self._internal_links_encrypted()
        return self

    def _internal_links_encrypted(self) -> None:
        """Production: every link between services is TLS, or loopback, or named in
        ``plaintext_links_allowed`` (an explicit, logged exception)."""
        allowed = set(self.plaintext_links_allowed)
        dsn = self.clickhouse.dsn.get_secret_value() if self.clickhouse.dsn else ""
        checks = (
            ("s3", "s3.endpoint", self.s3.endpoint, "the S3 keys and object metadata cross it"),
            ("clickhouse", "clickhouse.dsn", dsn, "its password and the metadata rows cross it"),
        )
        for link, key, url, why in checks:
            if url.startswith("http://") and not _loopback(url) and link not in allowed:
                raise ValueError(
                    f"{key} must be https (or chdb://, or loopback) in production: {why}; "
                    f"to accept it in clear, add {link!r} to plaintext_links_allowed"
                )
        for key, host in (("worker.web_host", self.worker.web_host),
                          ("ingest.api_host", self.ingest.api_host)):  # fmt: skip
            if not _loopback(f"http://{host}") and "http-api" not in allowed:
                raise ValueError(
                    f"{key} must be a loopback address in production: the API speaks plain HTTP "
                    "with a bearer token (put a TLS proxy in front, or add 'http-api' to "
                    "plaintext_links_allowed)"
                )

    @property
    def ingest_journal_dir(self) -> Path:
        return self.ingest.journal_dir or self.home / "ingest-journal"

    @property
    def ingest_journal_key_file(self) -> Path:
        """``ingest.journal_key_file``, else ``<home>/keys/ingest-journal.key``."""
        return self.ingest.journal_key_file or self.home / "keys" / "ingest-journal.key"

    @property
    def kafka_ca_file(self) -> Path:
        return self.kafka.ca_file or self.home / "tls" / "ca.pem"

    @property
    def master_key_file(self) -> Path:
        """The local master key file: ``keys.local_key_file``, else ``<home>/keys/master.json``."""
        return self.keys.local_key_file or self.home / "keys" / "master.json"

    @property
    def audit_signing_key_file(self) -> Path:
        """``audit.signing_key_file``, else ``<home>/keys/audit-signing.pem``."""
        return self.audit.signing_key_file or self.home / "keys" / "audit-signing.pem"

    @property
    def audit_public_key_file(self) -> Path:
        """``audit.public_key_file``, else the signing key's path + ``.pub``."""
        key = self.audit_signing_key_file
        return self.audit.public_key_file or key.with_name(key.name + ".pub")

    @property
    def clickhouse_dsn(self) -> str:
        """The DSN to use; the dev default is an embedded chDB under ``home``."""
        if self.clickhouse.dsn is not None:
            return self.clickhouse.dsn.get_secret_value()
        return f"chdb://{self.home / 'chdb'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _CONFIG_FILE.get() or os.environ.get("CALLVAULT_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings, turning pydantic's report into a :class:`SettingsError` naming each key.

    ``config_file`` takes precedence over ``CALLVAULT_CONFIG``; it travels in a context variable so
    the process environment is never mutated.
    """
    if config_file is not None and not Path(config_file).is_file():
        raise SettingsError(f"config file {config_file} does not exist")
    token = _CONFIG_FILE.set(Path(config_file) if config_file is not None else None)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise SettingsError(f"cannot read configuration: {exc}") from None
    finally:
        _CONFIG_FILE.reset(token)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(settings)"
        parts.append(f"{key}: {err['msg']}")
    return "invalid settings: " + "; ".join(parts)


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``CALLVAULT_*`` variables that reproduce ``settings`` in a child process.

    Secrets are included in clear on purpose — this is how a worker subprocess receives them —
    so the result must only ever go into a child's environment, never a log.
    """
    env: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(
                    f"{prefix}{name.upper()}__"
                    if isinstance(getattr(value, name), BaseModel)
                    else f"{prefix}{name.upper()}",
                    getattr(value, name),
                )
        elif value is None:
            return
        elif isinstance(value, SecretStr):
            env[prefix] = value.get_secret_value()
        elif isinstance(value, tuple | list):
            env[prefix] = json.dumps(list(value))
        elif isinstance(value, bool):
            env[prefix] = "true" if value else "false"
        else:
            env[prefix] = str(value)

    walk("CALLVAULT_", settings)
    return env
