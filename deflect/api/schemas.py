"""Request and response models of the HTTP API (separate, as the API contract)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_SUBJECT = 500
MAX_DESCRIPTION = 10_000
MAX_FIELDS = 20
MAX_FIELD_VALUE = 1_000


class SuggestRequest(BaseModel):
    """What the web form sends while the customer types."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    subject: str = Field("", max_length=MAX_SUBJECT, description="The form's subject line.")
    description: str = Field("", max_length=MAX_DESCRIPTION, description="The form's message body.")
    fields: dict[str, str] = Field(default_factory=dict, description='Other form fields, e.g. {"product": "iOS app"}.')
    locale: str | None = Field(None, max_length=35, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
    session_id: str | None = Field(None, max_length=128, description="Made by the widget; stable for a visit.")
    form_id: str | None = Field(None, max_length=128)
    k: int = Field(3, ge=1, le=10, strict=True, description="How many suggestions (1-10).")

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
        None, description="Why it abstained: low_confidence, no_match, out_of_scope, never_deflect"
    )
    intent: IntentOut | None
    suggestions: list[SuggestionOut]
    index_version: str | None
    model_version: str | None


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    error: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)
