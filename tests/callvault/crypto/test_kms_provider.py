"""AwsKmsProvider against a real boto3 KMS client whose transport is botocore's Stubber.

Stubber validates every request against the real KMS service model, so parameter names, types
and the encryption context are checked as KMS would see them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ParamValidationError
from botocore.stub import Stubber

from callvault.crypto.errors import DecryptionFailed, KeyProviderError
from callvault.crypto.providers import AwsKmsProvider, MasterKeyProvider

ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALIAS = "alias/callvault"
CTX = {"callvault:workspace": "ws-1", "callvault:key_id": "wk-1"}
BLOB = b"\x01\x02\x03kms-ciphertext-blob" * 4


@pytest.fixture
def kms() -> Iterator[tuple[AwsKmsProvider, Stubber]]:
    client = boto3.client(
        "kms", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    with Stubber(client) as stub:
        yield AwsKmsProvider(ALIAS, client=client), stub
        stub.assert_no_pending_responses()


def test_is_a_master_key_provider(kms):
    provider, _ = kms
    assert isinstance(provider, MasterKeyProvider)
    assert provider.key_id == ALIAS


def test_generate_data_key(kms):
    provider, stub = kms
    key = os.urandom(32)
    stub.add_response(
        "generate_data_key",
        {"CiphertextBlob": BLOB, "Plaintext": key, "KeyId": ARN},
        expected_params={"KeyId": ALIAS, "KeySpec": "AES_256", "EncryptionContext": CTX},
    )
    plaintext, wrapped, master_id = provider.generate_data_key(CTX)
    assert (plaintext, wrapped, master_id) == (key, BLOB, ARN)


def test_decrypt_passes_key_id_and_context(kms):
    provider, stub = kms
    key = os.urandom(32)
    stub.add_response(
        "decrypt",
        {"KeyId": ARN, "Plaintext": key, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"},
        expected_params={"CiphertextBlob": BLOB, "KeyId": ARN, "EncryptionContext": CTX},
    )
    assert provider.unwrap(BLOB, ARN, CTX) == key


def test_decrypt_of_a_wrong_length_key_is_refused(kms):
    provider, stub = kms
    stub.add_response("decrypt", {"KeyId": ARN, "Plaintext": b"short"})
    with pytest.raises(DecryptionFailed):
        provider.unwrap(BLOB, ARN, CTX)


def test_encrypt_wraps_an_existing_key(kms):
    provider, stub = kms
    key = os.urandom(32)
    stub.add_response(
        "encrypt",
        {"CiphertextBlob": BLOB, "KeyId": ARN},
        expected_params={"KeyId": ALIAS, "Plaintext": key, "EncryptionContext": CTX},
    )
    assert provider.wrap(key, CTX) == (BLOB, ARN)


def test_rewrap_uses_reencrypt(kms):
    provider, stub = kms
    old_arn = ARN.replace("1234abcd", "9999ffff")
    stub.add_response(
        "re_encrypt",
        {"CiphertextBlob": b"new-blob", "SourceKeyId": old_arn, "KeyId": ARN},
        expected_params={
            "CiphertextBlob": BLOB,
            "SourceKeyId": old_arn,
            "SourceEncryptionContext": CTX,
            "DestinationKeyId": ALIAS,
            "DestinationEncryptionContext": CTX,
        },
    )
    assert provider.rewrap(BLOB, old_arn, CTX) == (b"new-blob", ARN)


def test_is_current_resolves_the_alias_once(kms):
    provider, stub = kms
    stub.add_response(
        "describe_key",
        {"KeyMetadata": {"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "Arn": ARN}},
        expected_params={"KeyId": ALIAS},
    )
    assert provider.is_current(ALIAS)
    assert provider.is_current(ARN)
    assert not provider.is_current(ARN.replace("1234abcd", "9999ffff"))  # no second DescribeKey


@pytest.mark.parametrize(
    "code",
    ["ThrottlingException", "KMSInternalException", "DependencyTimeoutException",
     "KeyUnavailableException"],
)  # fmt: skip
def test_transient_errors_are_retriable(kms, code):
    provider, stub = kms
    stub.add_client_error("generate_data_key", service_error_code=code, http_status_code=500)
    with pytest.raises(KeyProviderError, match=code) as err:
        provider.generate_data_key(CTX)
    assert err.value.retriable


@pytest.mark.parametrize("code", ["InvalidCiphertextException", "IncorrectKeyException"])
def test_undecryptable_wrapped_keys_are_decryption_failures(kms, code):
    provider, stub = kms
    stub.add_client_error("decrypt", service_error_code=code, http_status_code=400)
    with pytest.raises(DecryptionFailed) as err:
        provider.unwrap(BLOB, ARN, CTX)
    assert not err.value.retriable


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "DisabledException", "NotFoundException"]
)
def test_configuration_errors_are_not_retriable(kms, code):
    provider, stub = kms
    stub.add_client_error("decrypt", service_error_code=code, http_status_code=400)
    with pytest.raises(KeyProviderError, match=code) as err:
        provider.unwrap(BLOB, ARN, CTX)
    assert not isinstance(err.value, DecryptionFailed)
    assert not err.value.retriable


def test_wrong_length_key_is_refused_before_kms_sees_it(kms):
    provider, _ = kms
    with pytest.raises(ValueError):
        provider.wrap(b"short", CTX)


def test_no_key_material_in_repr_or_errors(kms):
    provider, stub = kms
    key = os.urandom(32)
    stub.add_response("generate_data_key", {"CiphertextBlob": BLOB, "Plaintext": key, "KeyId": ARN})
    stub.add_client_error("encrypt", service_error_code="ThrottlingException")
    data_key = provider.generate_data_key(CTX)
    with pytest.raises(KeyProviderError) as err:
        provider.wrap(key, CTX)
    for text in [repr(provider), repr(data_key), str(err.value)]:
        assert key.hex() not in text
        assert repr(key) not in text


class RaisingClient:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def encrypt(self, **_: object) -> None:
        raise self.exc


def test_connection_failures_are_retriable():
    exc = EndpointConnectionError(endpoint_url="https://kms.eu-west-1.amazonaws.com")
    with pytest.raises(KeyProviderError, match="EndpointConnectionError") as err:
        AwsKmsProvider(ARN, client=RaisingClient(exc)).wrap(os.urandom(32), CTX)
    assert err.value.retriable


def test_missing_credentials_are_not_retriable():
    with pytest.raises(KeyProviderError) as err:
        AwsKmsProvider(ARN, client=RaisingClient(NoCredentialsError())).wrap(os.urandom(32), CTX)
    assert not err.value.retriable


def test_parameter_errors_do_not_quote_the_key():
    key = os.urandom(32)
    exc = ParamValidationError(report=f"Invalid type for parameter Plaintext, value: {key!r}")
    with pytest.raises(KeyProviderError) as err:
        AwsKmsProvider(ARN, client=RaisingClient(exc)).wrap(key, CTX)
    assert repr(key) not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
