"""Typed settings: sources, validation messages, secrets."""

from __future__ import annotations

import pytest

from callvault.errors import SettingsError
from callvault.settings import load_settings, settings_env


def test_environment_overrides_nested_keys(monkeypatch):
    monkeypatch.setenv("CALLVAULT_KAFKA__BOOTSTRAP", "10.0.0.1:9092")
    monkeypatch.setenv("CALLVAULT_WORKER__BATCH_MAX", "7")
    s = load_settings()
    assert s.kafka.bootstrap == "10.0.0.1:9092"
    assert s.worker.batch_max == 7


def test_toml_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    cfg = tmp_path / "cv.toml"
    cfg.write_text('region = "na"\n[worker]\nbatch_max = 9\nweb_port = 7000\n')
    monkeypatch.setenv("CALLVAULT_WORKER__WEB_PORT", "7100")
    s = load_settings(cfg)
    assert (s.region, s.worker.batch_max, s.worker.web_port) == ("na", 9, 7100)


def test_validation_error_names_the_offending_key(monkeypatch):
    monkeypatch.setenv("CALLVAULT_KAFKA__INGEST_RETENTION_HOURS", "0")
    with pytest.raises(SettingsError, match=r"kafka\.ingest_retention_hours"):
        load_settings()


def test_unknown_region_is_refused():
    with pytest.raises(SettingsError, match="region 'mars' is not one of"):
        load_settings(region="mars")


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_malformed_toml_is_a_clear_error(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("region = \n")
    with pytest.raises(SettingsError, match="cannot read configuration"):
        load_settings(cfg)


def test_secrets_do_not_print():
    s = load_settings(hash_pepper="super-secret-pepper", s3={"secret_key": "s3-secret-xyz"})
    text = repr(s) + str(s) + s.model_dump_json()
    assert "super-secret-pepper" not in text
    assert "s3-secret-xyz" not in text


def test_production_refuses_dev_secrets():
    with pytest.raises(SettingsError, match=r"s3\.secret_key still has the dev default"):
        load_settings(environment="production", clickhouse={"dsn": "http://h:8123"})


def test_settings_env_round_trips(monkeypatch):
    s = load_settings(kafka={"topic_prefix": "x."}, worker={"batch_max": 3})
    for key, value in settings_env(s).items():
        monkeypatch.setenv(key, value)
    assert load_settings() == s


PRODUCTION_SECRETS = {
    "environment": "production",
    "clickhouse": {"dsn": "https://h:8443", "workspace_secret": "ch-ws-prod"},
    "s3": {"secret_key": "s3-prod", "endpoint": "https://s3.eu.example"},
    "worker": {"query_token": "query-prod"},
    "hash_pepper": "pepper-prod",
    "ingest": {"api_token": "ingest-prod", "nonce_secret": "nonce-prod"},
}


def test_siem_hec_needs_https_in_production_and_its_token_never_prints():
    hec = {"hec_enabled": True, "hec_token": "hec-token-abc123"}
    with pytest.raises(SettingsError, match=r"siem\.hec_url must be https in production"):
        load_settings(**PRODUCTION_SECRETS, siem={**hec, "hec_url": "http://splunk:8088"})
    s = load_settings(**PRODUCTION_SECRETS, siem={**hec, "hec_url": "https://splunk:8088"})
    assert "hec-token-abc123" not in repr(s) + str(s) + s.model_dump_json()
    with pytest.raises(SettingsError, match="hec_enabled needs hec_url and hec_token"):
        load_settings(siem={"hec_enabled": True, "hec_url": "https://splunk:8088"})
    with pytest.raises(SettingsError, match=r"siem\.hec_url"):
        load_settings(siem={"hec_url": "splunk:8088"})


def test_siem_settings_reach_a_worker_process(monkeypatch, tmp_path):
    siem = {"syslog_enabled": True, "syslog_port": 6514, "syslog_ca_file": str(tmp_path / "ca")}
    s = load_settings(siem={**siem, "hec_enabled": True, "hec_url": "http://h", "hec_token": "t"})
    for key, value in settings_env(s).items():
        monkeypatch.setenv(key, value)
    assert load_settings() == s


def test_production_refuses_plaintext_internal_links_unless_named(monkeypatch):
    assert load_settings(**PRODUCTION_SECRETS).environment == "production"
    ch = {**PRODUCTION_SECRETS["clickhouse"], "dsn": "http://u:pw@clickhouse:8123"}
    with pytest.raises(SettingsError, match=r"clickhouse\.dsn must be https"):
        load_settings(**{**PRODUCTION_SECRETS, "clickhouse": ch})
    s3 = {**PRODUCTION_SECRETS["s3"], "endpoint": "http://s3:8333"}
    with pytest.raises(SettingsError, match=r"s3\.endpoint must be https"):
        load_settings(**{**PRODUCTION_SECRETS, "s3": s3})
    with pytest.raises(SettingsError, match=r"worker\.web_host must be a loopback"):
        load_settings(**{**PRODUCTION_SECRETS, "worker": {"query_token": "q", "web_host": "::"}})
    # loopback (a TLS sidecar) and embedded chDB are fine; so is an explicit, named exception
    local = {**PRODUCTION_SECRETS, "s3": {**s3, "endpoint": "http://127.0.0.1:8333"}}
    assert load_settings(**local).s3.endpoint.startswith("http://127.")
    embedded = {**PRODUCTION_SECRETS["clickhouse"], "dsn": "chdb:///var/lib/callvault/chdb"}
    assert load_settings(**{**PRODUCTION_SECRETS, "clickhouse": embedded})
    monkeypatch.setenv("CALLVAULT_PLAINTEXT_LINKS_ALLOWED", '["s3", "clickhouse"]')
    named = load_settings(**{**PRODUCTION_SECRETS, "clickhouse": ch, "s3": s3})
    assert named.plaintext_links_allowed == ("s3", "clickhouse")
