"""Ingest: read a source, chunk, embed only what changed, write a new index bundle."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deflect.core.datahome import DataHome
from deflect.core.errors import BundleError, IngestError, NotReadyError
from deflect.kb_ingest.chunking import chunk_sections
from deflect.kb_ingest.sources import Parsed, Skipped, read_source
from deflect.models.documents import Article, Chunk
from deflect.models.index_bundle import IndexBundle, article_language, load_current, write_index_bundle


@dataclass
class IngestSummary:
    """What an ingest did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    version: str | None = None
    previous_version: str | None = None
    chunks: int = 0
    embedded_chunks: int = 0
    seconds: float = 0.0
    #: temporary files a killed ingest or train had left in the data home, removed first
    leftovers_removed: int = 0
    leftover_bytes: int = 0
    #: nothing was written (``dry_run``)
    dry_run: bool = False
    encoder: str | None = None
    languages: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def as_dict(self) -> dict:
        return {
            "version": self.version,
            "previous_version": self.previous_version,
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "removed": len(self.removed),
            "skipped": [{"origin": s.origin, "reason": s.reason} for s in self.skipped],
            "chunks": self.chunks,
            "embedded_chunks": self.embedded_chunks,
            "seconds": round(self.seconds, 3),
            "leftovers_removed": self.leftovers_removed,
            "encoder": self.encoder,
            "languages": self.languages,
        }


def _previous(home: Path, embedder, chunking: dict) -> IndexBundle | None:
    try:
        prev = load_current(home, embedder)
    except (NotReadyError, BundleError):
        return None
    if prev.manifest.get("chunking") != chunking:
        return None
    return prev


def ingest(
    source: str | Path | Sequence[str | Path],
    home: str | Path,
    embedder,
    *,
    fmt: str = "auto",
    chunk_tokens: int = 200,
    chunk_overlap: int = 40,
    ann_threshold: int = 100_000,
    progress: bool = False,
    full: bool = False,
    dry_run: bool = False,
    max_removed: float | None = None,
    _fail_after: str | None = None,
) -> IngestSummary:
    """Ingest ``source`` (one source, or several that together form one index: a Markdown
    folder and a CSV FAQ, one folder per language, ...) into ``home`` and make the new
    index current. An id found in two sources is kept where it is first seen.

    ``embedder`` is the encoder, or a function that picks one from the set of the articles'
    languages (None: not detected), called once the sources are read: that is how
    ``encoder=auto`` chooses per knowledge base.

    Unchanged articles (same content hash) reuse their chunks and vectors from the current
    bundle; deleted ones are dropped. Records that cannot be read are skipped and reported.
    If nothing usable is found, :class:`IngestError` is raised and the current index stays.

    An ingest that would remove more than ``max_removed`` (a share; None: no limit) of the
    current index's articles raises :class:`RemovalRefused` and changes nothing: a source
    left out or read with the wrong ``--format`` must not empty the help center. With
    ``dry_run`` nothing is embedded or written: the summary says what would change.
    """
    t0 = time.perf_counter()
    home = Path(home)
    summary = IngestSummary()
    if not dry_run:
        DataHome(home).check_writable()  # before any work: one line, not a traceback after embedding
        removed = DataHome(home).clean_leftovers()
        summary.leftovers_removed, summary.leftover_bytes = len(removed), sum(n for _, n in removed)
    chunking = {"tokens": chunk_tokens, "overlap": chunk_overlap}

    sources = [source] if isinstance(source, (str, Path)) else list(source)
    if not sources:
        raise IngestError("no source given")
    parsed: list[Parsed] = []
    first_seen: dict[str, str] = {}
    for rec in (r for src in sources for r in read_source(src, fmt)):
        if isinstance(rec, Skipped):
            summary.skipped.append(rec)
            continue
        aid = rec.article.id
        if aid in first_seen:
            summary.skipped.append(Skipped(rec.origin, f"duplicate id {aid!r} (first seen at {first_seen[aid]})"))
            continue
        first_seen[aid] = rec.origin
        parsed.append(rec)
    if not parsed:
        raise IngestError(
            f"{', '.join(map(str, sources))}: no article could be ingested ({len(summary.skipped)} skipped); "
            "the current index is unchanged"
        )

    langs = [article_language(r.article) for r in parsed]
    for lang in langs:
        key = lang or "unknown"
        summary.languages[key] = summary.languages.get(key, 0) + 1
    if not hasattr(embedder, "encode"):  # a chooser: the knowledge base's languages decide
        embedder = embedder(frozenset(langs))
    summary.encoder = embedder.name
    prev = None if full else _previous(home, embedder, chunking)
    summary.previous_version = prev.version if prev else None
    prev_chunks: dict[str, list[int]] = {}
    prev_titles: dict[str, np.ndarray] = {}
    if prev is not None:
        prev_titles = dict(zip(prev.article_ids, prev.title_vectors, strict=True))
        for i, c in enumerate(prev.chunks):
            prev_chunks.setdefault(c.article_id, []).append(i)

    articles: list[Article] = []
    titles: list[np.ndarray | None] = []
    chunks: list[Chunk] = []
    vectors: list[np.ndarray | None] = []
    to_embed: list[int] = []
    for rec in parsed:
        art = rec.article
        old = prev.articles.get(art.id) if prev is not None else None
        articles.append(art)
        if old is not None and old.content_hash == art.content_hash:
            summary.unchanged.append(art.id)
            titles.append(prev_titles[art.id])
            for i in prev_chunks.get(art.id, []):
                chunks.append(prev.chunks[i])
                vectors.append(prev.vectors[i])
            continue
        (summary.updated if old is not None else summary.added).append(art.id)
        titles.append(None)
        for c in chunk_sections(
            art.id, rec.sections, embedder.token_spans, max_tokens=chunk_tokens, overlap=chunk_overlap
        ):
            to_embed.append(len(chunks))
            chunks.append(c)
            vectors.append(None)
    current = list(prev.articles) if prev is not None else _current_ids(home)  # read once: --full only
    keep = {a.id for a in articles}
    summary.removed = sorted(a for a in current if a not in keep)
    if prev is None and current:  # --full: what is new is what the current index lacks
        summary.added = [a for a in summary.added + summary.updated if a not in current]
        summary.updated = [a.id for a in articles if a.id in current]
    if max_removed is not None and current and len(summary.removed) > max_removed * len(current):
        raise RemovalRefused(summary, len(current), max_removed)
    if dry_run:
        summary.embedded_chunks = len(to_embed)
        summary.chunks = len(chunks)
        summary.dry_run = True
        summary.seconds = time.perf_counter() - t0
        return summary

    summary.chunks = len(chunks)
    if prev is not None and not summary.changed:
        summary.version = prev.version
        summary.seconds = time.perf_counter() - t0
        return summary

    by_id = {a.id: a for a in articles}
    if to_embed:
        texts = [chunks[i].embed_text(by_id[chunks[i].article_id].title) for i in to_embed]
        new = embedder.encode(texts, batch_size=embedder.bulk_batch_size, progress=progress, role="passage")
        for i, v in zip(to_embed, new, strict=True):
            vectors[i] = v
    summary.embedded_chunks = len(to_embed)
    new_titles = [i for i, t in enumerate(titles) if t is None]
    if new_titles:
        tv = embedder.encode([articles[i].title for i in new_titles], batch_size=32, role="passage")
        for i, v in zip(new_titles, tv, strict=True):
            titles[i] = v
    title_matrix = np.vstack(titles).astype(np.float32)
    matrix = np.vstack(vectors).astype(np.float32) if vectors else np.zeros((0, embedder.dimension), np.float32)
    summary.version = write_index_bundle(
        home,
        articles,
        chunks,
        matrix,
        title_matrix,
        embedder,
        ann_threshold=ann_threshold,
        extra={"chunking": chunking, "source": str(source)},
        _fail_after=_fail_after,
    )
    summary.seconds = time.perf_counter() - t0
    return summary


class RemovalRefused(IngestError):
    """An ingest that would remove too many of the current articles; nothing was changed."""

    def __init__(self, summary: IngestSummary, current: int, share: float) -> None:
        self.summary = summary
        n = len(summary.removed)
        examples = ", ".join(summary.removed[:5]) + (", ..." if n > 5 else "")
        super().__init__(
            f"this ingest would remove {n} of the {current} current articles ({n / current:.0%}, more than "
            f"{share:.0%}): {examples}. Nothing was changed. Pass every source at once (several sources "
            "form one index), check --format, see the changes with --dry-run, or pass --replace to accept"
        )


def _current_ids(home: Path) -> list[str]:
    """The article ids of the current index ([] when there is none or it cannot be read)."""
    from deflect.models import bundle as B
    from deflect.models.index_bundle import read_articles

    try:
        version = B.read_pointer(home, "index")
        return [a.id for a in read_articles(B.bundle_path(home, "index", version))] if version else []
    except (OSError, ValueError, BundleError):
        return []
