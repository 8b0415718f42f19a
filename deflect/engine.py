"""The engine: form text in, suggestions (or a reasoned abstention) out.

It holds the current index bundle and picks up a new ``current-index`` without a restart:
a request keeps the bundle it started with, so a swap never fails a request in flight.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np

from deflect.config import EncoderDefaults, Settings, check_intents, defaults_for
from deflect.core.errors import BundleError, NotReadyError
from deflect.experiment import CONTROL, assign_variant
from deflect.models import bundle as B
from deflect.models.documents import Suggestion, link_allowed
from deflect.models.embedders.protocol import Embedder
from deflect.models.encoding import QueryEncoding, encode_queries
from deflect.models.index_bundle import IndexBundle
from deflect.models.intent import IntentPrediction
from deflect.models.language import chinese_script, detect, language_of_locale, script_of_locale, warm_up
from deflect.models.registry import LoadedModel, load_model
from deflect.models.retrieval import rank_articles
from deflect.tuning import TuningCache

log = logging.getLogger("deflect.engine")
#: the length of query text a request is answered from (the encoders read the first 256
#: tokens, about 1,000 characters); it bounds the work of one request, whatever its body
MAX_QUERY_CHARS = 2000


@dataclass
class SuggestQuery:
    """What the form sends. ``fields`` are other form fields (product, plan, ...)."""

    subject: str = ""
    description: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    locale: str | None = None
    session_id: str | None = None
    form_id: str | None = None
    #: where the ticket would come from: form, chat or email (deflect.store.base.CHANNELS)
    channel: str = "form"
    k: int = 3
    #: the token of an earlier answer to this session: it fixes the session's variant
    token: str | None = None

    def text(self) -> str:
        """The retrieval query: subject, description, then other fields as ``name: value``; its
        first :data:`MAX_QUERY_CHARS` characters (what is ranked, classified and recorded)."""
        parts = [self.subject.strip(), self.description.strip()]
        parts += [f"{k}: {v}".strip() for k, v in self.fields.items() if str(v).strip()]
        return "\n".join(p for p in parts if p)[:MAX_QUERY_CHARS]


@dataclass
class SuggestResult:
    """The engine's answer; the API returns it as JSON."""

    request_id: str
    variant: str
    abstained: bool
    reason: str | None
    intent: IntentPrediction | None
    suggestions: list[Suggestion]
    index_version: str | None
    model_version: str | None
    would_show: list[Suggestion] = field(default_factory=list)
    latency_ms: float = 0.0
    #: the session's token (None without a session id): the widget sends it with its events
    token: str | None = None


class BundleHolder:
    """The current bundle of one kind, reloaded in the background when ``current-<kind>`` changes.

    ``load(version)`` builds the in-memory object; a version that fails to load is logged
    and skipped, and the previous one keeps serving.
    """

    def __init__(self, home: Path, kind: str, load, *, interval: float = 1.0, missing: str = "") -> None:
        self.home = Path(home)
        self.kind = kind
        self._load = load
        self.interval = interval
        self.missing = missing or f"no {kind} in {home}"
        self._current = None
        self._version: str | None = None
        self._checked = 0.0
        self._loading = threading.Lock()
        self._failed: dict[str, str] = {}
        self.last_error: str | None = None
        #: at start, when the current version failed: {"current": version, "serving": version}
        self.fallback: dict | None = None
        pointer = B.read_pointer(self.home, kind)
        self._try_load(pointer)
        if self._current is None and pointer is not None:
            self._fall_back(pointer)

    def _fall_back(self, pointer: str) -> None:
        """Serve the newest older version that loads, when the current one does not (a server
        restarted onto a corrupt bundle keeps answering); said in the log and ``/readyz``.
        Only versions older than the pointer: a newer one may be a candidate never promoted."""
        reason = self._failed.get(pointer, "")
        for version in reversed(B.list_versions(self.home, self.kind)):
            if version >= pointer:
                continue
            self._try_load(version)
            if self._current is not None:
                self.fallback = {"current": pointer, "serving": version}
                log.warning(
                    "%s %s (current) cannot be loaded: serving %s, the newest good older version, until "
                    "current-%s names one that loads (%s)", self.kind, pointer, version, self.kind, reason
                )  # fmt: skip
                self.last_error = None
                return

    def _try_load(self, version: str | None) -> None:
        if version is None:  # no pointer (yet, or removed): keep serving what we have
            return
        if version == self._version or version in self._failed:
            return
        try:
            obj = self._load(version)
        except (BundleError, OSError, ValueError) as exc:
            self._failed[version] = str(exc)
            self.last_error = str(exc)
            log.error("not switching to %s %s: %s", self.kind, version, exc)
            return
        self._current, self._version = obj, version  # requests in flight keep the old object
        self.last_error = None
        if self.fallback is not None and version == B.read_pointer(self.home, self.kind):
            self.fallback = None
        log.info("serving %s %s", self.kind, version)

    def _background(self, version: str) -> None:
        try:
            self._try_load(version)
        finally:
            self._loading.release()

    def refresh(self, *, wait: bool = False) -> None:
        """Check the pointer now; load a new version (in the background unless ``wait``)."""
        self._checked = time.monotonic()
        version = B.read_pointer(self.home, self.kind)
        if version is None or version == self._version:
            return
        if wait:
            with self._loading:
                self._try_load(version)
        elif self._loading.acquire(blocking=False):
            threading.Thread(target=self._background, args=(version,), daemon=True).start()

    def get_optional(self):
        """The current object, or None when there is none yet."""
        if time.monotonic() - self._checked >= self.interval:
            self.refresh(wait=self._current is None)
        return self._current

    def get(self):
        """The current object; :class:`NotReadyError` when there is none."""
        obj = self.get_optional()
        if obj is None:
            raise NotReadyError(self.last_error or self.missing)
        return obj

    @property
    def ready(self) -> bool:
        return self.get_optional() is not None


class Engine:
    """Turns a :class:`SuggestQuery` into a :class:`SuggestResult`."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        from deflect.models.embedders import load_embedder

        self.settings = settings
        self.embedder = embedder if embedder is not None else load_embedder(settings)
        home = Path(settings.home)
        self.index = BundleHolder(
            home,
            "index",
            self._load_index,
            interval=settings.reload_interval,
            missing=f"no index in {home}: run `deflect ingest SOURCE` first",
        )
        self.model = BundleHolder(home, "model", self._load_model, interval=settings.reload_interval)
        links = settings.intent_articles
        self._mapping = dict(links) if isinstance(links, dict) else (_read_mapping(links) if links else None)
        self.tuning = TuningCache(settings.reload_interval)
        model = self.model.get_optional()
        if model is not None:  # a misspelt never-deflect intent would switch the protection off
            check_intents(settings, list(model.manifest.get("labels") or []), model=f"model {model.version}")

    def _load_index(self, version: str) -> IndexBundle:
        bundle = IndexBundle.load(B.bundle_path(Path(self.settings.home), "index", version), self.embedder)
        warm_up(bundle.language_set)
        if "zh" in bundle.language_set:
            _ = bundle.scripts  # read once now, not on the first request
        return bundle

    @cached_property
    def provenance(self):
        """The deployment's session tokens and control salt (:mod:`deflect.provenance`)."""
        from deflect.provenance import Provenance

        return Provenance.from_settings(self.settings)

    @staticmethod
    def encoder_defaults(bundle: IndexBundle) -> EncoderDefaults:
        """The calibrated defaults of the encoder this index was built with."""
        return defaults_for((bundle.manifest.get("embedder") or {}).get("name"))

    def min_score(self, bundle: IndexBundle, intent: str | None = None) -> float:
        """The suggestion threshold: ``deflect tune``'s for this index (per intent when tuned
        so), else ``DEFLECT_MIN_SCORE``, else the index's encoder's calibrated default."""
        tuned = self.tuning.get(bundle.path)
        if tuned is None:
            if self.settings.min_score is not None:
                return self.settings.min_score
            return self.encoder_defaults(bundle).min_score
        per = tuned.get("per_intent") or {}
        if intent is not None and isinstance(per.get(intent), dict):
            return float(per[intent]["threshold"])
        return float(tuned["threshold"])

    def fusion_alpha(self, bundle: IndexBundle) -> float:
        """The convex-fusion weight of the dense score: ``deflect tune``'s for this index,
        else ``DEFLECT_FUSION_ALPHA``, else the index's encoder's calibrated default."""
        tuned = self.tuning.get(bundle.path)
        if tuned is not None and isinstance(tuned.get("fusion_alpha"), (int, float)):
            return float(tuned["fusion_alpha"])
        if self.settings.fusion_alpha is not None:
            return self.settings.fusion_alpha
        return self.encoder_defaults(bundle).fusion_alpha

    def _load_model(self, version: str) -> LoadedModel:
        return load_model(Path(self.settings.home), version, self.embedder)

    def encode_query(self, text: str) -> QueryEncoding:
        """Everything the encoders compute for a query, for the current intent model (one
        encoder pass; the GIL is released while it runs). See :func:`encode_queries`."""
        return encode_queries(self.embedder, [text], self.model.get_optional())

    def rank(
        self,
        text: str,
        k: int,
        *,
        lang: str | None = None,
        bundle: IndexBundle | None = None,
        vector=None,
        alpha: float | None = None,
    ) -> list:
        """Ranked article hits for ``text`` (in language ``lang``, None: detected) with the
        configured fusion (``alpha``: another convex weight than :meth:`fusion_alpha`),
        every language together (no abstention)."""
        s = self.settings
        bundle = bundle or self.index.get()
        qv = vector if vector is not None else self.encode_query(text).embedding[0]
        return rank_articles(
            bundle,
            text,
            qv,
            k,
            mode=s.fusion,
            alpha=self.fusion_alpha(bundle) if alpha is None else alpha,
            title_weight=s.title_weight,
            candidates=s.candidates,
            lang=lang,
        )

    @staticmethod
    def query_language(q: SuggestQuery, text: str, bundle: IndexBundle | None = None) -> str | None:
        """The customer's language: the request's ``locale``, else the index's one language
        (nothing to choose between, so no detection on the request path), else detected."""
        lang = language_of_locale(q.locale)
        if lang is None and bundle is not None and len(bundle.language_set) == 1:
            return next(iter(bundle.language_set))
        return lang or detect(text)

    @staticmethod
    def query_script(q: SuggestQuery, text: str) -> str | None:
        """The Chinese script the customer reads: the request's ``locale`` (``zh-TW``), else
        the one the text is written in (None when it cannot be told)."""
        return script_of_locale(q.locale) or chinese_script(text)

    @staticmethod
    def prefer_language(
        hits: list, lang: str | None, bundle: IndexBundle, threshold: float, script: str | None = None
    ) -> list:
        """The customer's language first: when an article in ``lang`` (or of unknown
        language) passes ``threshold``, only such articles are shown; otherwise every
        language competes, so an article in another language is shown only when nothing in
        the customer's language would be. Within Chinese, the same rule puts the customer's
        ``script`` (Traditional or Simplified) first."""
        if lang is None:
            return hits
        if len(bundle.language_set) >= 2:
            own = [h for h in hits if bundle.languages.get(h.article_id) in (lang, None)]
            if not own or own[0].score < threshold:
                return hits
            hits = own
        if lang == "zh" and script is not None and bundle.scripts:
            same = [h for h in hits if bundle.scripts.get(h.article_id) in (script, None)]
            if same and same[0].score >= threshold:
                return same
        return hits

    def linked_articles(self, model: LoadedModel, label: str) -> list[str]:
        """Articles linked to an intent: the configured mapping file, else links learned in training."""
        if self._mapping is not None:
            return self._mapping.get(label, [])
        return model.links.get(label, [])

    def classify(self, text: str, encoding: QueryEncoding) -> tuple[IntentPrediction | None, LoadedModel | None]:
        """The intent prediction for ``text`` (None when no model is current)."""
        model = self.model.get_optional()
        if model is None:
            return None, None
        return model.predict([text], encoding)[0], model

    def suggest(
        self, q: SuggestQuery, *, encoding: QueryEncoding | None = None, alpha: float | None = None
    ) -> SuggestResult:
        """Suggestions for what the customer typed, or an abstention with its reason.

        ``encoding`` is the query's :meth:`encode_query` when the caller made it already
        (the API does, off the event loop). ``alpha`` overrides the fusion weight (``deflect
        tune`` tries several).
        """
        t0 = time.perf_counter()
        s = self.settings
        bundle = self.index.get()
        text = q.text()
        encoding = encoding if encoding is not None else self.encode_query(text)
        pred, model = self.classify(text, encoding)
        lang = self.query_language(q, text, bundle)
        extra = 5 if pred is not None and s.intent_boost > 0 else 0
        several = len(bundle.language_set) > 1 or len(bundle.script_set) > 1
        want = 4 * (q.k + extra) if several else q.k + extra  # room for the language rule
        hits = self.rank(text, want, lang=lang, bundle=bundle, vector=encoding.embedding[0], alpha=alpha)
        if pred is not None and extra and not pred.out_of_scope:
            linked = set(self.linked_articles(model, pred.label))
            for h in hits:
                if h.article_id in linked:
                    h.score += s.intent_boost * pred.confidence
            hits.sort(key=lambda h: (-h.score, h.article_id))
        intent_label = pred.label if pred is not None and not pred.out_of_scope else None
        threshold = self.min_score(bundle, intent_label)
        script = self.query_script(q, text) if lang == "zh" else None
        hits = self.prefer_language(hits, lang, bundle, threshold, script)[: q.k]
        # a score that is not a finite number (a corrupt encoder, a NaN vector) is never shown
        # or compared with a threshold; with nothing left the engine abstains
        finite = [h for h in hits if math.isfinite(h.score)]
        broken = len(finite) < len(hits) or not bool(np.isfinite(encoding.embedding).all())
        if broken:
            log.error("the query's vector or %d scores are not finite numbers", len(hits) - len(finite))
        hits = finite
        suggestions = []
        for h in hits:
            art = bundle.articles[h.article_id]
            chunk = bundle.chunks[h.chunk]
            url = art.url if link_allowed(art.url) else ""  # a bundle from before ingest checked links
            suggestions.append(
                Suggestion(art.id, art.title, url, chunk.text, round(h.score, 4), list(chunk.heading_path))
            )
        top = suggestions[0].score if suggestions else float("-inf")
        abstained, reason = False, None
        if pred is not None and pred.label in s.never_deflect:
            abstained, reason = True, "never_deflect"
        elif pred is not None and pred.out_of_scope and top < s.oos_override_score:
            abstained, reason = True, "out_of_scope"
        elif not suggestions:
            abstained, reason = True, "invalid_score" if broken else "no_match"
        elif s.fusion in ("convex", "dense") and top < threshold:
            abstained, reason = True, "low_confidence"
        now = datetime.now(UTC)
        variant = self.provenance.variant_of(q.token, q.session_id, now) or assign_variant(
            q.session_id, s.control_share, s.control_salt or self.provenance.salt
        )
        request_id = uuid.uuid4().hex
        return SuggestResult(
            request_id=request_id,
            variant=variant,
            abstained=abstained,
            reason=reason,
            intent=pred,
            # the control group is shown nothing; what it would have been shown is kept
            suggestions=[] if abstained or variant == CONTROL else suggestions,
            would_show=suggestions,
            index_version=bundle.version,
            model_version=model.version if model is not None else None,
            latency_ms=(time.perf_counter() - t0) * 1000,
            token=self.provenance.issue(q.session_id, request_id, variant, now) if q.session_id else None,
        )


def _read_mapping(path: str) -> dict[str, list[str]]:
    """An intent -> article ids mapping file (JSON object of lists)."""
    import json

    from deflect.core.errors import ConfigError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"intent_articles: cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ConfigError(f"intent_articles: {path} must be a JSON object mapping each intent to a list of article ids")
    return {str(k): [str(a) for a in v] for k, v in data.items()}
