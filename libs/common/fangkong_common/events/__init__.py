"""The event contract: envelope, topic names, versioned payloads."""

from fangkong_common.events import topics
from fangkong_common.events.envelope import Envelope, EventPayload
from fangkong_common.events.schemas import PAYLOAD_MODELS, UnknownEventError, payload_model

__all__ = ["Envelope", "EventPayload", "PAYLOAD_MODELS", "UnknownEventError", "payload_model", "topics"]
