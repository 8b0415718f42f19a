"""The index bundle: articles, chunks, their vectors (FAISS), a BM25 index, a manifest."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from deflect.core.errors import BundleError, NotReadyError
from deflect.models import bundle as B
from deflect.models.documents import Article, Chunk
from deflect.models.language import ANALYZER_VERSION, chinese_script, detect, language_of_locale, script_of_locale
from deflect.models.lexical import BM25Index
from deflect.models.vector_index import FaissIndex, build_index


@dataclass
class IndexBundle:
    """Everything retrieval needs, loaded in memory."""

    path: Path
    manifest: dict
    articles: dict[str, Article]
    chunks: list[Chunk]
    vectors: np.ndarray
    dense: FaissIndex
    lexical: BM25Index
    chunk_article: np.ndarray  # chunk position -> article row
    article_ids: list[str]
    title_vectors: np.ndarray  # one per article, in ``article_ids`` order
    article_start: np.ndarray  # first chunk of each article (chunks are stored grouped by article)
    article_end: np.ndarray
    languages: dict[str, str | None]  # article id -> its language (models/language.py), None: unknown

    @cached_property
    def language_set(self) -> frozenset[str]:
        """The languages of the articles (unknown ones left out); computed once per bundle,
        not on every request."""
        return frozenset(lang for lang in self.languages.values() if lang)

    @cached_property
    def script_set(self) -> frozenset[str]:
        """The Chinese scripts among the articles; computed once per bundle."""
        return frozenset(self.scripts.values())

    @cached_property
    def scripts(self) -> dict[str, str]:
        """The script (``Hant`` / ``Hans``) of each Chinese article whose script is known: its
        locale's (``zh-TW``), else read from its title and opening; computed once per bundle."""
        out = {}
        for aid, lang in self.languages.items():
            if lang != "zh":
                continue
            art = self.articles[aid]
            script = script_of_locale(art.locale) or chinese_script(f"{art.title}\n{art.body[:500]}")
            if script:
                out[aid] = script
        return out

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @classmethod
    def load(cls, path: Path, embedder=None) -> IndexBundle:
        """Load a bundle whose files match their checksums and whose vectors are finite; with
        ``embedder``, refuse one built by another embedder."""
        path = Path(path)
        manifest = B.verified_manifest(path)
        if embedder is not None:
            B.check_embedder(manifest, embedder, path)
        current = path / "articles.jsonl"
        try:
            articles = read_articles(path)
            current = path / "chunks.jsonl"
            with open(current) as f:
                chunks = [Chunk.from_json(json.loads(line)) for line in f]
            current = path / "vectors.npy"
            vectors = np.load(current)
            current = path / "titles.npy"
            title_vectors = np.load(current)
            current = path / "vectors.faiss"
            dense = FaissIndex.load(current)
            current = path / "lexical"
            lexical = BM25Index.load(current)
            current = path / LANGUAGES_FILE
            languages = read_languages(path, articles)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"index bundle {path} is incomplete or corrupt ({current.name}: {exc})") from exc
        for name, arr in (("vectors.npy", vectors), ("titles.npy", title_vectors)):
            if not np.isfinite(arr).all():
                raise BundleError(f"index bundle {path}: {name} holds values that are not finite numbers")
        if not (len(chunks) == len(vectors) == len(dense) == len(lexical)):
            raise BundleError(
                f"index bundle {path} is inconsistent: {len(chunks)} chunks, "
                f"{len(vectors)} vectors, {len(dense)} dense, {len(lexical)} lexical entries"
            )
        by_id = {a.id: a for a in articles}
        article_ids = [a.id for a in articles]
        row = {aid: i for i, aid in enumerate(article_ids)}
        chunk_article = np.array([row[c.article_id] for c in chunks], dtype=np.int64)
        if len(chunk_article) and np.any(np.diff(chunk_article) < 0):
            raise BundleError(f"index bundle {path}: chunks are not grouped by article")
        if len(title_vectors) != len(articles):
            raise BundleError(f"index bundle {path}: {len(title_vectors)} title vectors for {len(articles)} articles")
        rows = np.arange(len(articles))
        start = np.searchsorted(chunk_article, rows, side="left")
        end = np.searchsorted(chunk_article, rows, side="right")
        return cls(
            path,
            manifest,
            by_id,
            chunks,
            vectors,
            dense,
            lexical,
            chunk_article,
            article_ids,
            title_vectors,
            start,
            end,
            languages,
        )


LANGUAGES_FILE = "languages.json"


def article_language(article: Article) -> str | None:
    """An article's language: its ``locale``, else detected from its title and body."""
    return language_of_locale(article.locale) or detect(f"{article.title}\n{article.body[:2000]}")


def read_languages(path: Path, articles: Sequence[Article]) -> dict[str, str | None]:
    """Each article's language as recorded at ingest (bundles from before languages were
    recorded: from the locale alone)."""
    f = Path(path) / LANGUAGES_FILE
    if not f.exists():
        return {a.id: language_of_locale(a.locale) for a in articles}
    recorded = json.loads(f.read_text(encoding="utf-8"))
    return {a.id: recorded.get(a.id) for a in articles}


def read_articles(path: Path) -> list[Article]:
    """The articles of the bundle at ``path`` (without loading its vectors or indexes)."""
    with open(Path(path) / "articles.jsonl", encoding="utf-8") as f:
        return [Article.from_json(json.loads(line)) for line in f]


def load_current(home: Path, embedder=None) -> IndexBundle:
    """The bundle named by ``current-index``."""
    version = B.read_pointer(home, "index")
    if version is None:
        raise NotReadyError(f"no index in {home}: run `deflect ingest SOURCE` first")
    return IndexBundle.load(B.bundle_path(home, "index", version), embedder)


def write_index_bundle(
    home: Path,
    articles: Sequence[Article],
    chunks: Sequence[Chunk],
    vectors: np.ndarray,
    title_vectors: np.ndarray,
    embedder,
    *,
    ann_threshold: int,
    extra: dict | None = None,
    make_current: bool = True,
    _fail_after: str | None = None,
) -> str:
    """Write a complete index bundle and (by default) make it current. Returns its version."""
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    if len(articles) != len(title_vectors):
        raise ValueError(f"{len(articles)} articles but {len(title_vectors)} title vectors")
    order = {a.id: i for i, a in enumerate(articles)}
    if any(order[chunks[i].article_id] > order[chunks[i + 1].article_id] for i in range(len(chunks) - 1)):
        raise ValueError("chunks must be grouped by article, in article order")

    def fill(tmp: Path) -> dict:
        with open(tmp / "articles.jsonl", "w") as f:
            for a in articles:
                f.write(json.dumps(a.to_json(), ensure_ascii=False) + "\n")
        with open(tmp / "chunks.jsonl", "w") as f:
            for c in chunks:
                f.write(json.dumps(c.to_json(), ensure_ascii=False) + "\n")
        np.save(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
        np.save(
            tmp / "titles.npy", np.ascontiguousarray(title_vectors, dtype=np.float32).reshape(-1, embedder.dimension)
        )
        if _fail_after == "vectors":  # used by the crash-safety test
            raise RuntimeError("simulated crash while writing the bundle")
        index = build_index(
            np.asarray(vectors, dtype=np.float32).reshape(len(chunks), embedder.dimension), ann_threshold=ann_threshold
        )
        index.save(tmp / "vectors.faiss")
        by_id = {a.id: a for a in articles}
        languages = {a.id: article_language(a) for a in articles}
        (tmp / LANGUAGES_FILE).write_text(json.dumps(languages, ensure_ascii=False))
        lex = BM25Index()
        lex.index([c.embed_text(by_id[c.article_id].title) for c in chunks], [languages[c.article_id] for c in chunks])
        lex.save(tmp / "lexical")
        return {
            "embedder": {"name": embedder.name, "dimension": embedder.dimension, "fingerprint": embedder.fingerprint},
            "counts": {"articles": len(articles), "chunks": len(chunks)},
            "vector_index": index.kind,
            "lexical": {"analyzer": ANALYZER_VERSION, "languages": sorted({v for v in languages.values() if v})},
            **(extra or {}),
        }

    return B.write_bundle(Path(home), "index", fill, make_current=make_current)
