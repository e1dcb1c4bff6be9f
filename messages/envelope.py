"""The CloudEvents 1.0 envelope (structured JSON mode) shared by every command and event."""

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from messages.fields import PrintableId, Rfc3339Time, TraceParent, TraceState, UriReference

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
MAX_BODY_BYTES = 256 * 1024
"""The contract's limit on a message body."""


class Frozen(BaseModel):
    """Immutable, and nothing beyond the declared fields.

    Incoming documents are validated with `strict=True` (no "5" for 5, no "true" for true) by
    parsing; models built in code keep pydantic's usual conversions (lists for tuples).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _null_means_absent(cls, value: Any) -> Any:
        # CloudEvents treats a null attribute as absent; so do we, for every optional field.
        if isinstance(value, dict):
            return {
                key: item
                for key, item in value.items()
                if item is not None
                or key not in cls.model_fields
                or cls.model_fields[key].is_required()
            }
        return value


class Envelope(Frozen):
    """Attributes every message carries; `type` and `data` are declared by each message."""

    specversion: Literal["1.0"] = Field(description='exactly "1.0"')
    type: str = Field(description="the message type; each model narrows it to its own")
    id: PrintableId = Field(description="unique per logical command; the idempotency key")
    source: UriReference = Field(description="URI-reference of the producer, e.g. /billing-service")
    time: Rfc3339Time = Field(description="RFC 3339 timestamp")
    datacontenttype: Literal["application/json"] | None = None
    correlationid: PrintableId | None = None
    traceparent: TraceParent | None = None
    tracestate: TraceState | None = None


def type_name(model: type[Envelope]) -> str:
    """The CloudEvents `type` a message model is declared with."""
    (name,) = get_args(model.model_fields["type"].annotation)
    return str(name)
