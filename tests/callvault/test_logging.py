"""Logs never carry secrets: masked keys, and libraries that log request bodies kept above DEBUG."""

from __future__ import annotations

import logging

import structlog

from callvault.logging import configure_logging
from callvault.settings import load_settings


def test_debug_logging_never_lets_botocore_print_request_bodies():
    configure_logging(load_settings(log_level="DEBUG"))
    try:
        for name in ("botocore", "botocore.endpoint", "boto3", "urllib3"):
            assert not logging.getLogger(name).isEnabledFor(logging.DEBUG)
    finally:
        structlog.reset_defaults()


def test_secret_looking_fields_are_masked(capsys):
    configure_logging(load_settings(log_level="INFO", log_format="json"))
    try:
        structlog.get_logger("t").info("x", password="hunter2", Plaintext="k3y", key_id="ck-1")
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "hunter2" not in err and "k3y" not in err and "ck-1" in err
