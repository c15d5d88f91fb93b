"""The one envelope every event travels in (DESIGN.md, "The event contract")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer, field_validator

from fangkong_common import clock


def utcnow() -> datetime:
    return clock.now()


class EventPayload(BaseModel):
    """Base of every payload model. Subclasses name their type and version.

    Payloads ignore unknown fields so that a consumer on version N still reads
    an event a newer producer enriched with extra (non-breaking) fields.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    event_version: ClassVar[int] = 1


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str = Field(min_length=1)
    version: int = Field(default=1, ge=1)
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    source: str = Field(min_length=1)
    key: str = Field(min_length=1, description="partition key, usually the person_key")
    correlation_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    payload: dict[str, Any]

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_serializer("occurred_at")
    def _rfc3339(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

    @classmethod
    def wrap(
        cls,
        payload: EventPayload,
        *,
        source: str,
        key: str,
        correlation_id: uuid.UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> "Envelope":
        return cls(
            type=payload.event_type,
            version=payload.event_version,
            source=source,
            key=key,
            correlation_id=correlation_id or uuid.uuid4(),
            occurred_at=occurred_at or utcnow(),
            payload=payload.model_dump(mode="json"),
        )

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Envelope":
        return cls.model_validate_json(raw)

    def parsed(self) -> EventPayload:
        """The payload as its versioned model (raises if type/version is unknown or invalid)."""
        from fangkong_common.events.schemas import payload_model

        return payload_model(self.type, self.version).model_validate(self.payload)
