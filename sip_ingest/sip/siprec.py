"""SIPREC recording metadata (RFC 7865, ``application/rs-metadata+xml``).

The metadata tells a Session Recording Server who is on the recorded call and which SDP stream
(by ``a=label``) carries whose voice. It comes from a peer, so it is parsed with
``defusedxml`` with DTDs forbidden outright: no entity expansion (billion laughs), no external
entities, no network access. Elements are matched by local name in the recording namespace or
in none, and unknown elements (vendor extensions such as the RFC's ``<mydata>``) are ignored.

Both association styles are read: RFC 7865 ``<participantstreamassoc>`` and the older
draft style with ``<send>``/``<recv>`` directly inside ``<participant>``, which some SRCs still
emit.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # for type annotations only; parsing goes through defusedxml
from dataclasses import dataclass, field
from typing import Final, Literal

from defusedxml.ElementTree import fromstring

from sip_ingest.sip.errors import SipParseError
from sip_ingest.sip.message import SipUri

__all__ = [
    "METADATA_CONTENT_TYPE",
    "RECORDING_NS",
    "Participant",
    "RecordingMetadata",
    "Stream",
    "parse_recording_metadata",
]

RECORDING_NS: Final = "urn:ietf:params:xml:ns:recording:1"
METADATA_CONTENT_TYPE: Final = "application/rs-metadata+xml"
_MAX_BYTES: Final = 256 * 1024
_MAX_ITEMS: Final = 256


@dataclass(frozen=True, slots=True)
class Participant:
    participant_id: str
    #: ``nameID/@aor``: the participant's address of record (sip:, sips: or tel: URI).
    aor: str | None = None
    #: ``nameID/name``: display name, if the SRC sent one.
    name: str | None = None
    #: stream_ids this participant sends / receives.
    send: tuple[str, ...] = ()
    recv: tuple[str, ...] = ()

    @property
    def number(self) -> str | None:
        """User part of the AOR (``+4930...`` of ``sip:+4930...@host``), or the tel: number."""
        if not self.aor:
            return None
        try:
            return SipUri.parse(self.aor).user
        except SipParseError:
            return None


@dataclass(frozen=True, slots=True)
class Stream:
    stream_id: str
    #: The SDP ``a=label`` this stream is carried under.
    label: str | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingMetadata:
    participants: tuple[Participant, ...]
    streams: tuple[Stream, ...]
    #: SDP label -> the participant who *sends* the stream with that label.
    label_to_participant: dict[str, Participant] = field(default_factory=dict)
    session_ids: tuple[str, ...] = ()
    #: ``complete`` or ``partial`` (a partial update only carries changes, RFC 7865 6.1).
    datamode: str | None = None

    def participant(self, participant_id: str) -> Participant | None:
        return next((p for p in self.participants if p.participant_id == participant_id), None)

    def caller_callee(
        self, labels_in_sdp_order: list[str] | None = None
    ) -> tuple[Participant | None, Participant | None]:
        """Best guess at (caller, callee); RFC 7865 has no notion of either.

        Heuristic: the participant who sends the *first* stream is the caller. "First" is the
        first label in SDP m-line order when ``labels_in_sdp_order`` is given (SRCs such as
        Cisco CUBE, Avaya SBCE and FreeSWITCH put the calling leg's stream first), otherwise the
        first ``<stream>`` in the document. The callee is the first other participant that
        receives that stream, else the first other participant that sends anything, else the
        first other participant. Either side is ``None`` when the metadata cannot tell. Treat
        the result as a label for analytics, not as an authenticated fact.
        """
        by_label = {s.label: s for s in self.streams if s.label is not None}
        ordered: list[Stream] = []
        if labels_in_sdp_order:
            ordered = [by_label[label] for label in labels_in_sdp_order if label in by_label]
        ordered += [s for s in self.streams if s not in ordered]
        caller = None
        first_stream = None
        for stream in ordered:
            caller = self._sender(stream.stream_id)
            if caller is not None:
                first_stream = stream
                break
        if caller is None:
            return None, None
        others = [p for p in self.participants if p.participant_id != caller.participant_id]
        assert first_stream is not None
        callee = (
            next((p for p in others if first_stream.stream_id in p.recv), None)
            or next((p for p in others if p.send), None)
            or (others[0] if others else None)
        )
        return caller, callee

    def role_of_label(
        self, label: str, labels_in_sdp_order: list[str] | None = None
    ) -> Literal["caller", "callee"] | None:
        """Whether the stream with this SDP label carries the caller or the callee (per
        :meth:`caller_callee`); None if its sender is unknown or neither."""
        sender = self.label_to_participant.get(label)
        if sender is None:
            return None
        caller, callee = self.caller_callee(labels_in_sdp_order)
        if caller is not None and sender.participant_id == caller.participant_id:
            return "caller"
        if callee is not None and sender.participant_id == callee.participant_id:
            return "callee"
        return None

    def _sender(self, stream_id: str) -> Participant | None:
        return next((p for p in self.participants if stream_id in p.send), None)


def _local(tag: object) -> str:
    if not isinstance(tag, str):  # comments and processing instructions
        return ""
    namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    if namespace not in ("", RECORDING_NS):
        return ""
    return local


def _text(element: ET.Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    text = element.text.strip()
    return text or None


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in element if _local(c.tag) == name), None)


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def parse_recording_metadata(data: bytes | str) -> RecordingMetadata:
    """Parse an rs-metadata document; anything malformed or unsafe raises SipParseError."""
    if len(data) > _MAX_BYTES:
        raise SipParseError("recording metadata too large")
    try:
        root = fromstring(data, forbid_dtd=True)
    # Not just ParseError and the defusedxml refusals: expat also raises LookupError for an
    # unknown encoding="..." and codec errors for exotic ones. Whatever the parser throws on a
    # peer's bytes means the same thing to us.
    except Exception as exc:
        raise SipParseError(
            f"recording metadata is not acceptable XML: {type(exc).__name__}"
        ) from None
    if _local(root.tag) != "recording":
        raise SipParseError("recording metadata root element must be <recording>")
    children = list(root)
    if len(children) > _MAX_ITEMS:
        raise SipParseError("recording metadata has too many elements")

    datamode = None
    sessions: list[str] = []
    participants: dict[str, tuple[str | None, str | None, list[str], list[str]]] = {}
    streams: list[Stream] = []
    for child in children:
        kind = _local(child.tag)
        if kind == "datamode":
            datamode = _text(child)
        elif kind == "session":
            session_id = child.get("session_id")
            if session_id:
                sessions.append(session_id)
        elif kind == "participant":
            pid = child.get("participant_id") or child.get("id")
            if not pid:
                raise SipParseError("<participant> without participant_id")
            name_id = _child(child, "nameID")
            aor = name_id.get("aor") if name_id is not None else None
            name = _text(_child(name_id, "name")) if name_id is not None else None
            entry = participants.setdefault(pid, (aor, name, [], []))
            if entry[0] is None and aor is not None:
                entry = participants[pid] = (aor, name, entry[2], entry[3])
            entry[2].extend(t for t in map(_text, _children(child, "send")) if t)
            entry[3].extend(t for t in map(_text, _children(child, "recv")) if t)
        elif kind == "stream":
            stream_id = child.get("stream_id")
            if not stream_id:
                raise SipParseError("<stream> without stream_id")
            streams.append(
                Stream(stream_id, _text(_child(child, "label")), child.get("session_id"))
            )
        elif kind == "participantstreamassoc":
            pid = child.get("participant_id")
            if not pid:
                raise SipParseError("<participantstreamassoc> without participant_id")
            entry = participants.setdefault(pid, (None, None, [], []))
            entry[2].extend(t for t in map(_text, _children(child, "send")) if t)
            entry[3].extend(t for t in map(_text, _children(child, "recv")) if t)

    people = tuple(
        Participant(pid, aor, name, tuple(dict.fromkeys(send)), tuple(dict.fromkeys(recv)))
        for pid, (aor, name, send, recv) in participants.items()
    )
    label_to_participant: dict[str, Participant] = {}
    for stream in streams:
        if stream.label is None:
            continue
        sender = next((p for p in people if stream.stream_id in p.send), None)
        if sender is not None:
            label_to_participant.setdefault(stream.label, sender)
    return RecordingMetadata(
        participants=people,
        streams=tuple(streams),
        label_to_participant=label_to_participant,
        session_ids=tuple(sessions),
        datamode=datamode,
    )
