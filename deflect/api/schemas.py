"""Request and response models of the HTTP API (separate, as the API contract)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deflect.store.base import EVENT_TYPES

MAX_SUBJECT = 500
MAX_DESCRIPTION = 10_000
MAX_FIELDS = 20
MAX_FIELD_VALUE = 1_000
#: the shape of the ids a client makes (session, form, event): letters, digits and ``._:-``,
#: up to 128, so that no personal data (an e-mail as a session id) is ever stored as an id
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
MAX_TOKEN = 200


class SuggestRequest(BaseModel):
    """What the web form sends while the customer types."""

    # a key the API does not know is refused (422 naming it): a misspelt `descripton` would
    # otherwise be dropped without a word
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    subject: str = Field("", max_length=MAX_SUBJECT, description="The form's subject line.")
    description: str = Field("", max_length=MAX_DESCRIPTION, description="The form's message body.")
    fields: dict[str, str] = Field(default_factory=dict, description='Other form fields, e.g. {"product": "iOS app"}.')
    locale: str | None = Field(None, max_length=35, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
    session_id: str | None = Field(
        None, max_length=128, pattern=ID_PATTERN, description="Made by the widget; stable for a visit."
    )
    form_id: str | None = Field(None, max_length=128, pattern=ID_PATTERN)
    channel: Literal["form", "chat", "email"] = Field(
        "form",
        description="Where the ticket would come from; the report counts tickets avoided and their cost per channel.",
    )
    k: int = Field(3, ge=1, le=10, strict=True, description="How many suggestions (1-10).")
    token: str | None = Field(
        None, max_length=MAX_TOKEN, description="The token of an earlier answer to this session (keeps its variant)."
    )

    @field_validator("fields")
    @classmethod
    def _limit_fields(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_FIELDS:
            raise ValueError(f"at most {MAX_FIELDS} fields")
        for key, value in v.items():
            if len(key) > 100 or len(value) > MAX_FIELD_VALUE:
                raise ValueError(f"field {key[:40]!r}: names up to 100 characters, values up to {MAX_FIELD_VALUE}")
        return v

    @model_validator(mode="after")
    def _some_text(self) -> SuggestRequest:
        if not self.subject.strip() and not self.description.strip():
            raise ValueError("subject, description: at least one must contain text")
        return self


class SuggestionOut(BaseModel):
    article_id: str
    title: str
    url: str
    snippet: str
    score: float


class IntentOut(BaseModel):
    label: str
    confidence: float


class SuggestResponse(BaseModel):
    request_id: str
    variant: str = Field(description="treatment, or control (shown nothing)")
    abstained: bool
    reason: str | None = Field(
        None, description="Why it abstained: low_confidence, no_match, out_of_scope, never_deflect, invalid_score"
    )
    intent: IntentOut | None
    suggestions: list[SuggestionOut]
    index_version: str | None
    model_version: str | None
    token: str | None = Field(
        None,
        description="Send it with this session's events and later suggest calls; null without a session_id.",
    )


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    error: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


# ---- events ------------------------------------------------------------------------------
MAX_EVENTS = 100
_EVENT_FIELDS_BY_TYPE = {
    "suggestions_shown": ("request_id",),
    "article_opened": ("article_id",),
    "feedback": ("helpful",),
    "form_submitted": (),
    "form_abandoned": (),
}


class EventIn(BaseModel):
    """One thing the customer did. ``ts`` is the client's clock (ISO 8601)."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(
        min_length=1, max_length=128, pattern=ID_PATTERN, description="Made by the client; a retry reuses it."
    )
    session_id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    ts: datetime = Field(description="ISO 8601 (no zone = UTC), e.g. 2026-11-23T10:15:02.120Z")
    request_id: str | None = Field(None, max_length=64, description="The suggest call this event follows.")
    article_id: str | None = Field(None, max_length=256)
    helpful: bool | None = Field(None, strict=True, description="With feedback: did the article answer it?")
    token: str | None = Field(
        None,
        max_length=MAX_TOKEN,
        description="The token /v1/suggest returned to this session (for the request the event names, if any).",
    )

    @field_validator("ts", mode="before")
    @classmethod
    def _iso(cls, v: object) -> datetime:
        """Only an ISO 8601 string (not a number), parsed once into an aware UTC datetime."""
        if not isinstance(v, str) or len(v) > 64:
            raise ValueError(f"not an ISO 8601 timestamp: {str(v)[:40]!r}")
        try:
            ts = datetime.fromisoformat(v.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an ISO 8601 timestamp: {v[:40]!r}") from None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        now = datetime.now(UTC)
        if ts.year < 2000 or ts > now + timedelta(days=1):
            raise ValueError(f"{v[:40]!r} is before 2000 or more than a day in the future")
        return ts.astimezone(UTC)

    @model_validator(mode="after")
    def _fields_of_type(self) -> EventIn:
        for name in _EVENT_FIELDS_BY_TYPE[self.type]:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: required for {self.type} events")
        return self


class EventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS, description=f"1 to {MAX_EVENTS} events.")


class EventsResponse(BaseModel):
    accepted: int = Field(description="Newly stored (durably, before this response).")
    duplicates: int = Field(description="Already stored under the same event_id (a retry); not counted twice.")
    rejected: int = Field(0, description="Kept apart and never counted: no valid token for their session.")
