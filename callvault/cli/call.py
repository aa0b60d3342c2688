"""``callvault call``: place a real SIP call to an ingest node and stream audio into it."""

from __future__ import annotations

import asyncio
import os

import click

from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, json_option


@click.command()
@click.option("--target", help="host:port of the ingest node (default: from settings).")
@click.option(
    "--transport", type=click.Choice(["udp", "tcp", "tls"]), default="udp", show_default=True
)
@click.option("--username", help="Trunk username (callvault trunk create prints it).")
@click.option(
    "--password",
    envvar="CALLVAULT_CALL_PASSWORD",
    help="Trunk password; prefer the CALLVAULT_CALL_PASSWORD environment variable.",
)
@click.option("--caller", default="+15550100", show_default=True, help="Calling number.")
@click.option("--callee", default="agent-1", show_default=True, help="Dialled agent/extension.")
@click.option(
    "--wav",
    type=click.Path(exists=True, dir_okay=False),
    help="8 kHz mono WAV (PCM16 or G.711) to stream; default: a generated tone.",
)
@click.option(
    "--agent-wav",
    type=click.Path(exists=True, dir_okay=False),
    help="With --siprec: audio of the agent leg.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(0.1, 3600),
    default=3.0,
    show_default=True,
    help="Length of the generated tone when no --wav is given.",
)
@click.option("--codec", type=click.Choice(["PCMU", "PCMA"]), default="PCMU", show_default=True)
@click.option("--srtp", is_flag=True, help="Offer SDES-SRTP (AES_CM_128_HMAC_SHA1_80).")
@click.option("--siprec", is_flag=True, help="Act as a SIPREC recording client (two legs).")
@click.option("--recording-off", is_flag=True, help="Ask for per-call suppression.")
@click.option("--no-verify", is_flag=True, help="TLS: do not verify the node's certificate.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="TLS trust anchor.")
@json_option
@click.pass_context
def call(
    ctx: click.Context, target: str | None, transport: str, username: str | None,
    password: str | None, caller: str, callee: str, wav: str | None, agent_wav: str | None,
    seconds: float, codec: str, srtp: bool, siprec: bool, recording_off: bool, no_verify: bool,
    ca_file: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Place one call (digest auth, optional TLS/SRTP/SIPREC), stream audio, hang up."""
    from sip_ingest.client import CallFailed, CallOptions, place_call
    from sip_ingest.media.wav import encode_g711, sine_pcm16, wav_to_g711

    settings = get_settings(ctx)
    cfg = settings.ingest
    if target:
        host, _, port_text = target.rpartition(":")
        if not host or not port_text.isdigit():
            raise click.BadParameter("expected host:port", param_hint="--target")
        port = int(port_text)
    else:
        host = cfg.advertised_host
        port = cfg.tls_port if transport == "tls" else cfg.sip_port

    def audio(path: str | None, freq: float) -> bytes:
        if path:
            return wav_to_g711(path, codec)  # type: ignore[arg-type]
        return encode_g711(sine_pcm16(freq, int(seconds * 1000)), codec)  # type: ignore[arg-type]

    opts = CallOptions(
        host=host, port=port, transport=transport,  # type: ignore[arg-type]
        username=username, password=password or os.environ.get("CALLVAULT_CALL_PASSWORD"),
        caller=caller, callee=callee, audio=audio(wav, 440.0),
        agent_audio=audio(agent_wav, 660.0) if siprec else b"",
        codec=codec, srtp=srtp, siprec=siprec,  # type: ignore[arg-type]
        headers={"X-Callvault-Recording": "off"} if recording_off else {},
        tls_verify=not no_verify, tls_ca_file=ca_file,
    )  # fmt: skip
    try:
        outcome = asyncio.run(place_call(opts))
    except (CallFailed, OSError) as exc:
        raise click.ClickException(f"call failed: {exc}") from None
    if as_json:
        emit_json(outcome.__dict__)
    else:
        click.echo(
            f"call {outcome.sip_call_id}: sent {sum(outcome.packets_sent)} RTP packets "
            f"({sum(outcome.bytes_sent)} bytes of {codec}) on {len(outcome.packets_sent)} leg(s); "
            f"BYE answered {outcome.status}"
        )
