"""The engine: form text in, suggestions (or a reasoned abstention) out.

It holds the current index bundle and picks up a new ``current-index`` without a restart:
a request keeps the bundle it started with, so a swap never fails a request in flight.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from deflect.config import Settings
from deflect.errors import BundleError, NotReadyError
from models import bundle as B
from models.documents import Suggestion
from models.index_bundle import IndexBundle
from models.retrieval import rank_articles

log = logging.getLogger("deflect.engine")


@dataclass
class SuggestQuery:
    """What the form sends. ``fields`` are other form fields (product, plan, ...)."""

    subject: str = ""
    description: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    locale: str | None = None
    session_id: str | None = None
    form_id: str | None = None
    k: int = 3

    def text(self) -> str:
        """The retrieval query: subject, description, then other fields as ``name: value``."""
        parts = [self.subject.strip(), self.description.strip()]
        parts += [f"{k}: {v}".strip() for k, v in self.fields.items() if str(v).strip()]
        return "\n".join(p for p in parts if p)


@dataclass
class SuggestResult:
    """The engine's answer; the API returns it as JSON."""

    request_id: str
    variant: str
    abstained: bool
    reason: str | None
    intent: dict | None
    suggestions: list[Suggestion]
    index_version: str | None
    model_version: str | None
    would_show: list[Suggestion] = field(default_factory=list)
    latency_ms: float = 0.0


class IndexHolder:
    """The current index bundle, reloaded in the background when ``current-index`` changes."""

    def __init__(self, home: Path, embedder, *, interval: float = 1.0) -> None:
        self.home = Path(home)
        self.embedder = embedder
        self.interval = interval
        self._bundle: IndexBundle | None = None
        self._checked = 0.0
        self._loading = threading.Lock()
        self._failed: dict[str, str] = {}
        self.last_error: str | None = None
        self._try_load(B.read_pointer(self.home, "index"))

    def _try_load(self, version: str | None) -> None:
        if version is None or (self._bundle is not None and self._bundle.version == version):
            return
        if version in self._failed:
            return
        try:
            bundle = IndexBundle.load(B.bundle_path(self.home, "index", version), self.embedder)
        except BundleError as exc:
            self._failed[version] = str(exc)
            self.last_error = str(exc)
            log.error("not switching to index %s: %s", version, exc)
            return
        self._bundle = bundle  # atomic reference swap; requests in flight keep the old one
        self.last_error = None
        log.info("serving index %s (%d articles, %d chunks)", version, len(bundle.articles), len(bundle.chunks))

    def _background_reload(self, version: str) -> None:
        try:
            self._try_load(version)
        finally:
            self._loading.release()

    def refresh(self, *, wait: bool = False) -> None:
        """Check the pointer now; load a new version (in the background unless ``wait``)."""
        self._checked = time.monotonic()
        version = B.read_pointer(self.home, "index")
        if version is None or (self._bundle is not None and self._bundle.version == version):
            return
        if wait:
            with self._loading:
                self._try_load(version)
        elif self._loading.acquire(blocking=False):
            threading.Thread(target=self._background_reload, args=(version,), daemon=True).start()

    def get(self) -> IndexBundle:
        """The bundle to serve this request with."""
        if time.monotonic() - self._checked >= self.interval:
            self.refresh(wait=self._bundle is None)
        if self._bundle is None:
            raise NotReadyError(self.last_error or f"no index in {self.home}: run `deflect ingest SOURCE` first")
        return self._bundle

    @property
    def ready(self) -> bool:
        try:
            self.get()
        except NotReadyError:
            return False
        return True


class Engine:
    """Turns a :class:`SuggestQuery` into a :class:`SuggestResult`."""

    def __init__(self, settings: Settings, embedder=None) -> None:
        from models.embedder import load_embedder

        self.settings = settings
        self.embedder = embedder if embedder is not None else load_embedder(settings)
        self.index = IndexHolder(Path(settings.home), self.embedder, interval=settings.reload_interval)

    def encode_query(self, text: str):
        """The query vector (None in lexical-only mode). Releases the GIL while the model runs."""
        return None if self.settings.fusion == "lexical" else self.embedder.encode([text])[0]

    def rank(self, text: str, k: int, *, locale: str | None = None, bundle: IndexBundle | None = None, vector=None):
        """Ranked article hits for ``text`` with the configured fusion (no abstention)."""
        s = self.settings
        bundle = bundle or self.index.get()
        qv = vector if vector is not None else self.encode_query(text)
        want = k if not locale else k * 4
        hits = rank_articles(
            bundle,
            text,
            qv,
            want,
            mode=s.fusion,
            alpha=s.fusion_alpha,
            title_weight=s.title_weight,
            candidates=s.candidates,
        )
        if locale:
            lang = locale.lower().split("-")[0]
            hits = [
                h
                for h in hits
                if not bundle.articles[h.article_id].locale
                or bundle.articles[h.article_id].locale.lower().split("-")[0] == lang
            ][:k]
        return hits

    def threshold(self, bundle: IndexBundle) -> float:
        """The abstention threshold: the index's tuned value if any, else the setting."""
        tuned = (bundle.manifest.get("tuning") or {}).get("min_score")
        return (
            float(tuned)
            if tuned is not None and "min_score" not in self.settings.model_fields_set
            else self.settings.min_score
        )

    def suggest(self, q: SuggestQuery, *, vector=None) -> SuggestResult:
        """Suggestions for what the customer typed, or an abstention with its reason.

        ``vector`` is the query's embedding when the caller computed it already
        (the API does, off the event loop).
        """
        t0 = time.perf_counter()
        bundle = self.index.get()
        hits = self.rank(q.text(), q.k, locale=q.locale, bundle=bundle, vector=vector)
        suggestions = []
        for h in hits:
            art = bundle.articles[h.article_id]
            chunk = bundle.chunks[h.chunk]
            suggestions.append(
                Suggestion(art.id, art.title, art.url, chunk.text, round(h.score, 4), list(chunk.heading_path))
            )
        abstained, reason = False, None
        if not suggestions:
            abstained, reason = True, "no_match"
        elif self.settings.fusion in ("convex", "dense") and suggestions[0].score < self.threshold(bundle):
            abstained, reason = True, "low_confidence"
        return SuggestResult(
            request_id=uuid.uuid4().hex,
            variant="treatment",
            abstained=abstained,
            reason=reason,
            intent=None,
            suggestions=[] if abstained else suggestions,
            would_show=suggestions,
            index_version=bundle.version,
            model_version=None,
            latency_ms=(time.perf_counter() - t0) * 1000,
        )
