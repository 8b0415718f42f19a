"""The data contracts shared by ingest, indexes and the engine (see docs/architecture.md)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

_URL_CHARS_OK = re.compile(r"[^\x00-\x20\x7f\\]+")


def link_allowed(url: str) -> bool:
    """True when ``url`` may be a link shown to a customer: ``http``/``https``, or relative to
    the page (``/help/12``, ``//help.example.com/12``, ``12.html``). Any other scheme
    (``javascript:``, ``data:``, ``vbscript:``, ...) is refused, and so are control characters,
    spaces and backslashes, which browsers drop or rewrite before they read the scheme."""
    if not url:
        return False
    if not _URL_CHARS_OK.fullmatch(url):
        return False
    scheme = urlsplit(url).scheme
    return scheme in ("http", "https") or (scheme == "" and ":" not in url.split("/", 1)[0])


@dataclass(frozen=True)
class Article:
    """One help-center article, body as plain text."""

    id: str
    title: str
    body: str
    url: str = ""
    locale: str = ""
    section: str = ""
    tags: tuple[str, ...] = ()
    updated_at: str = ""
    content_hash: str = ""

    def with_hash(self) -> Article:
        """A copy whose ``content_hash`` covers everything that is embedded or shown."""
        payload = json.dumps([self.title, self.body, self.url, self.section, list(self.tags), self.locale])
        return Article(
            **{
                **asdict(self),
                "tags": tuple(self.tags),
                "content_hash": hashlib.sha256(payload.encode()).hexdigest()[:20],
            }
        )

    def to_json(self) -> dict:
        d = asdict(self)
        d["tags"] = list(self.tags)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Article:
        return cls(**{**d, "tags": tuple(d.get("tags") or ())})


@dataclass(frozen=True)
class Chunk:
    """A piece of an article: what is embedded and what a snippet shows."""

    article_id: str
    position: int
    heading_path: tuple[str, ...]
    text: str

    def embed_text(self, title: str) -> str:
        """The text given to the embedder: title, headings, then the chunk."""
        heads = [h for h in self.heading_path if h and h != title]
        return "\n".join([title, *heads, self.text]) if heads else f"{title}\n{self.text}"

    def to_json(self) -> dict:
        return {
            "article_id": self.article_id,
            "position": self.position,
            "heading_path": list(self.heading_path),
            "text": self.text,
        }

    @classmethod
    def from_json(cls, d: dict) -> Chunk:
        return cls(d["article_id"], int(d["position"]), tuple(d.get("heading_path") or ()), d["text"])


@dataclass
class Suggestion:
    """An article suggested for a query; ``snippet`` is its best chunk."""

    article_id: str
    title: str
    url: str
    snippet: str
    score: float
    heading_path: list[str] = field(default_factory=list)
