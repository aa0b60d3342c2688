"""Request bodies of the agent API, validated strictly, and their Avro records.

Strict JSON validation on purpose: lax parsing would take ``"started_at": 1700000000`` as a
timestamp in some unit, ``"confidence": "0.9"`` as a number and a naive ISO time as UTC. Each of
those is a client bug better refused with the field named than stored wrong. Error messages name
the field and the rule, never the value (the text is a transcript of a phone call).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

#: Call, workspace and segment ids: what the rest of the pipeline accepts as keys and row ids.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
MAX_SEGMENT_TEXT = 10_000
MAX_SUMMARY_TEXT = 50_000
MAX_SEGMENTS = 500
MAX_INVOCATIONS = 200
MAX_ARGUMENTS = 16_384

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
#: BCP 47-ish: "en", "en-GB", "zh-Hant-TW".
Language = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,4}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SegmentIn(_Strict):
    segment_id: Id
    speaker: Literal["CALLER", "AGENT", "SYSTEM"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SEGMENT_TEXT)]
    started_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    language: Language | None = None
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] | None = None

    @field_validator("ended_at")
    @classmethod
    def _not_before_start(cls, v: datetime | None, info: ValidationInfo) -> datetime | None:
        started = info.data.get("started_at")
        if v is not None and started is not None and v < started:
            raise ValueError("must not be before started_at")
        return v


class TranscriptIn(_Strict):
    workspace_id: Id
    segments: Annotated[list[SegmentIn], Field(min_length=1, max_length=MAX_SEGMENTS)]


class SummaryIn(_Strict):
    workspace_id: Id
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SUMMARY_TEXT)]
    language: Language | None = None


class InvocationIn(_Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    invoked_at: AwareDatetime
    duration_ms: Annotated[int, Field(ge=0)] | None = None
    status: Literal["OK", "ERROR"]
    arguments_redacted: Annotated[str, StringConstraints(max_length=MAX_ARGUMENTS)] | None = None


class ToolInvocationsIn(_Strict):
    workspace_id: Id
    invocations: Annotated[list[InvocationIn], Field(min_length=1, max_length=MAX_INVOCATIONS)]


class BodyError(Exception):
    """A request body that does not validate; ``fields`` pairs a field path with the problem."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        super().__init__(
            "; ".join(f"{path}: {problem}" if path else problem for path, problem in fields)
        )


def parse(model: type[_Strict], body: bytes) -> Any:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise BodyError(
            [
                (field_path(err["loc"]), _problem(err["type"], err["msg"]))
                for err in exc.errors(include_input=False, include_url=False)
            ]
        ) from None


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("segments", 0, "speaker")`` -> ``segments[0].speaker``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problem(kind: str, message: str) -> str:
    if kind == "json_invalid":
        return "body is not valid JSON (" + message.removeprefix("Invalid JSON: ") + ")"
    if kind == "model_type":
        return "body must be a JSON object"
    if kind == "missing":
        return "required field is missing"
    return message.removeprefix("Value error, ")


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def segment_record(call_id: str, workspace_id: str, segment: SegmentIn) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "workspace_id": workspace_id,
        "segment_id": segment.segment_id,
        "kind": "SEGMENT",
        "speaker": segment.speaker,
        "text": segment.text,
        "started_at": _utc(segment.started_at),
        "ended_at": _utc(segment.ended_at) if segment.ended_at else None,
        "language": segment.language,
        "confidence": segment.confidence,
    }


def summary_record(call_id: str, body: SummaryIn, generated_at: datetime) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "workspace_id": body.workspace_id,
        # One summary per call: a regenerated summary replaces the earlier one downstream.
        "segment_id": "summary",
        "kind": "SUMMARY",
        "speaker": "SYSTEM",
        "text": body.text,
        "started_at": _utc(generated_at),
        "ended_at": None,
        "language": body.language,
        "confidence": None,
    }


def invocation_record(invocation: InvocationIn) -> dict[str, Any]:
    return {
        "name": invocation.name,
        "invoked_at": _utc(invocation.invoked_at),
        "duration_ms": invocation.duration_ms,
        "status": invocation.status,
        "arguments_redacted": invocation.arguments_redacted,
    }
