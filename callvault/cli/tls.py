"""``callvault tls``: the private CA that keeps Kafka traffic encrypted inside a deployment."""

from __future__ import annotations

from pathlib import Path

import click

from callvault.cli.output import emit_json, json_option
from callvault.devstack.pki import ensure_ca, ensure_leaf


@click.group()
def tls() -> None:
    """Certificates for internal TLS (Kafka). `callvault dev up` does this by itself."""


@tls.command("init")
@click.option(
    "--dir", "directory", type=click.Path(path_type=Path), required=True,
    help="Where ca.pem, ca-key.pem, <name>.pem and client.properties go (keys 0600).",
)  # fmt: skip
@click.option("--host", "hosts", multiple=True, required=True, help="Broker name or IP; repeat.")
@click.option("--name", default="kafka", show_default=True, help="Keystore file name.")
@json_option
def init(directory: Path, hosts: tuple[str, ...], name: str, as_json: bool) -> None:
    """Create the CA once and a broker keystore for HOSTs (reissued if the list changes).

    Writes a PEM keystore (PKCS#8 key + chain, what Kafka's ssl.keystore.type=PEM reads) and a
    client.properties for Kafka's own command-line tools. Idempotent.
    """
    pki = ensure_ca(directory, dir_mode=0o755)  # clients (other users) read ca.pem
    keystore = ensure_leaf(pki, name, list(hosts))
    props = directory / "client.properties"
    props.write_text(
        f"security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={pki.ca_file}\n"
    )
    out = {"ca_file": str(pki.ca_file), "keystore": str(keystore), "hosts": list(hosts)}
    if as_json:
        emit_json(out)
    else:
        click.echo(f"CA {pki.ca_file}; keystore {keystore} for {', '.join(hosts)}")
