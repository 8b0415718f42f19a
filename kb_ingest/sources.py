"""Readers for knowledge-base sources. Each yields parsed articles or reasons to skip.

Formats: a folder of Markdown / HTML / text files (optional YAML front matter); CSV or
JSONL with ``id,title,body,url,locale,section,tags,updated_at`` (``id``, ``title``, ``body``
required); a Zendesk Help Center export (``{"articles": [...], "next_page": ...}``, one or
several page files, drafts skipped).
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from deflect.core.errors import IngestError
from deflect.kb_ingest.clean import (
    Section,
    html_to_sections,
    looks_like_html,
    markdown_to_sections,
    sections_to_text,
    text_to_sections,
)
from deflect.models.documents import Article, link_allowed

FORMATS = ("auto", "markdown", "html", "csv", "jsonl", "zendesk")
MD_EXT = {".md", ".markdown", ".mdx"}
HTML_EXT = {".html", ".htm"}
TXT_EXT = {".txt"}
FIELDS = ("id", "title", "body", "url", "locale", "section", "tags", "updated_at")
_FRONT = re.compile(r"\A---\s*\n(.*?)\n(?:---|\.\.\.)\s*(?:\n|\Z)", re.S)


@dataclass
class Parsed:
    """An article read from a source, with its sections and where it came from."""

    article: Article
    sections: list[Section]
    origin: str


@dataclass
class Skipped:
    """A record that could not be ingested, and why."""

    origin: str
    reason: str


def _str(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        raise ValueError(f"expected text, got {type(v).__name__}")
    return str(v).strip()


def _tags(v) -> tuple[str, ...]:
    if v is None or v == "":
        return ()
    if isinstance(v, str):
        return tuple(t.strip() for t in re.split(r"[,|;]", v) if t.strip())
    if isinstance(v, (list, tuple)):
        return tuple(str(t).strip() for t in v if str(t).strip())
    raise ValueError(f"tags must be a list or a comma-separated string, got {type(v).__name__}")


def _make(fields: dict, body_sections: list[Section], origin: str, title_from_body: str | None) -> Parsed | Skipped:
    try:
        aid = _str(fields.get("id"))
        title = _str(fields.get("title")) or (title_from_body or "")
        if not aid:
            return Skipped(origin, "missing id")
        if not title:
            return Skipped(origin, f"article {aid}: missing title")
        sections = body_sections
        body = sections_to_text(sections)
        if not body.strip():
            return Skipped(origin, f"article {aid}: empty body after cleaning")
        url = _str(fields.get("url"))
        if url and not link_allowed(url):
            return Skipped(origin, f"article {aid}: url {url[:80]!r} is not an http(s) link")
        art = Article(
            id=aid,
            title=title,
            body=body,
            url=url,
            locale=_str(fields.get("locale")),
            section=_str(fields.get("section")),
            tags=_tags(fields.get("tags")),
            updated_at=_str(fields.get("updated_at")),
        ).with_hash()
    except ValueError as exc:
        return Skipped(origin, str(exc))
    return Parsed(art, sections, origin)


def _strip_heading_root(sections: list[Section], title: str) -> list[Section]:
    out = []
    for s in sections:
        path = s.heading_path[1:] if s.heading_path[:1] == (title,) else s.heading_path
        out.append(Section(path, s.text))
    return out


def _body_sections(body: str, kind: str) -> tuple[list[Section], str | None]:
    if kind == "html" or (kind == "auto" and looks_like_html(body)):
        return html_to_sections(body)
    if kind == "text":
        return text_to_sections(body)
    return markdown_to_sections(body)


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return raw.decode("utf-8")  # UnicodeDecodeError handled by callers


def read_document(path: Path, root: Path) -> Parsed | Skipped:
    """One Markdown, HTML or text file (front matter optional)."""
    origin = str(path)
    try:
        text = _read_text(path)
    except UnicodeDecodeError as exc:
        return Skipped(origin, f"not UTF-8 (byte {exc.start})")
    except OSError as exc:
        return Skipped(origin, f"cannot read: {exc.strerror}")
    if not text.strip():
        return Skipped(origin, "empty file")
    meta: dict = {}
    m = _FRONT.match(text)
    if m:
        try:
            loaded = yaml.safe_load(m.group(1))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 2}" if mark is not None else ""
            return Skipped(origin + where, f"invalid front matter: {getattr(exc, 'problem', exc)}")
        if loaded is not None and not isinstance(loaded, dict):
            return Skipped(origin, "front matter is not a mapping")
        meta = loaded or {}
        text = text[m.end() :]
    ext = path.suffix.lower()
    kind = "html" if ext in HTML_EXT else "text" if ext in TXT_EXT else "markdown"
    sections, h1 = _body_sections(text, kind)
    meta.setdefault("id", str(path.relative_to(root).with_suffix("")).replace("\\", "/") if root != path else path.stem)
    title = _str(meta.get("title")) if not isinstance(meta.get("title"), (list, dict)) else ""
    if not title and h1:
        meta["title"] = h1
    sections = _strip_heading_root(sections, _str(meta.get("title")) or h1 or "")
    return _make(meta, sections, origin, h1 or path.stem.replace("-", " ").replace("_", " "))


def read_folder(root: Path) -> Iterator[Parsed | Skipped]:
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in MD_EXT | HTML_EXT | TXT_EXT
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise IngestError(f"{root}: no Markdown, HTML or text files found")
    for p in files:
        yield read_document(p, root)


def _read_table_file(path: Path) -> str:
    """The whole text of a CSV/JSONL source; a file that is not UTF-8 or is empty cannot be read at all."""
    try:
        text = _read_text(path)
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not UTF-8 (byte {exc.start}); re-save the file as UTF-8") from exc
    if not text.strip():
        raise IngestError(f"{path}: empty file")
    return text


def read_csv(path: Path) -> Iterator[Parsed | Skipped]:
    """CSV with a header row; every malformed row is reported with its line number and
    skipped, and reading goes on after it.

    A quote that is never closed would make the rest of the file one field: a row that spans
    several lines and does not have the header's number of fields (or runs to the end of the
    file inside quotes) is reported as an unbalanced quote at its first line, and reading
    starts again on the next line, so the rows after it are read as rows. A quoted field may
    still span lines (a body with paragraphs) when its row is well formed."""
    text = _read_table_file(path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    lines = text.splitlines(keepends=True)
    header = [h.strip() for h in next(csv.reader(lines[:1]), [])]
    missing = [f for f in ("id", "title", "body") if f not in header]
    if missing:
        raise IngestError(f"{path}: missing required column(s) {', '.join(missing)} (header: {', '.join(header)})")
    start = 1  # index in ``lines`` of the next row to read
    while start < len(lines):
        reader = csv.reader(lines[start:], strict=True)
        first = start  # the row's first line (index)
        try:
            for row in reader:
                last = start + reader.line_num - 1  # the row's last line (index)
                origin = f"{path}:{first + 1}"
                spans = last > first
                if not row or (len(row) == 1 and not row[0].strip()):
                    first = last + 1
                    continue
                if len(row) != len(header):
                    if spans:  # an unbalanced quote took the lines after it: read them again
                        why = f"unbalanced quote: the row runs to line {last + 1} with {len(row)} fields"
                        yield Skipped(origin, f"{why} (header has {len(header)}); read again from line {first + 2}")
                        start = first + 1
                        break
                    if len(row) > len(header):
                        yield Skipped(origin, f"row has {len(row)} fields, header has {len(header)}")
                    else:
                        yield Skipped(origin, f"row has fewer fields than the header ({len(header)})")
                    first = last + 1
                    continue
                yield _record(dict(zip(header, row, strict=True)), origin)
                first = last + 1
            else:
                return
        except csv.Error as exc:
            yield Skipped(
                f"{path}:{first + 1}", f"malformed CSV ({exc}): this row is skipped, the next line read again"
            )
            start = first + 1


def _record(fields: dict, origin: str, *, html_body: bool | None = None) -> Parsed | Skipped:
    body = fields.get("body")
    if not isinstance(body, str):
        return Skipped(origin, "body must be text" if body is not None else "missing body")
    kind = "html" if html_body else "auto"
    sections, h1 = _body_sections(body, kind)
    title = _str(fields.get("title")) if isinstance(fields.get("title"), (str, int, float)) else ""
    if fields.get("title") is not None and not isinstance(fields.get("title"), (str, int, float)):
        return Skipped(origin, "title must be text")
    return _make(fields, _strip_heading_root(sections, title), origin, None)


def read_jsonl(path: Path) -> Iterator[Parsed | Skipped]:
    """JSONL, one article object per line; a bad line is reported with its line number."""
    text = _read_table_file(path)
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        origin = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            yield Skipped(origin, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        if not isinstance(obj, dict):
            yield Skipped(origin, "line is not a JSON object")
            continue
        yield _record(obj, origin)


def _zendesk_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() == ".json")
    return [path]


def is_zendesk_export(path: Path) -> bool:
    """True when ``path`` (a file or a folder of page files) holds Zendesk article pages."""
    for p in _zendesk_files(path)[:1]:
        try:
            head = p.read_bytes()[:4096].decode("utf-8", "ignore")
        except OSError:
            return False
        return '"articles"' in head
    return False


def read_zendesk(path: Path) -> Iterator[Parsed | Skipped]:
    """Pages of Zendesk's list-articles API; drafts skipped."""
    files = _zendesk_files(path)
    if not files:
        raise IngestError(f"{path}: no .json page files")
    for f in files:
        try:
            data = json.loads(_read_text(f))
        except UnicodeDecodeError as exc:
            yield Skipped(str(f), f"not UTF-8 (byte {exc.start})")
            continue
        except ValueError as exc:
            yield Skipped(f"{f}:{getattr(exc, 'lineno', '?')}", f"invalid JSON: {getattr(exc, 'msg', exc)}")
            continue
        if not isinstance(data, dict) or not isinstance(data.get("articles"), list):
            yield Skipped(str(f), 'not a Zendesk export page (no "articles" list)')
            continue
        for i, a in enumerate(data["articles"]):
            origin = f"{f}: articles[{i}]"
            if not isinstance(a, dict):
                yield Skipped(origin, "article is not an object")
                continue
            if a.get("draft"):
                yield Skipped(origin, f"article {a.get('id')}: draft")
                continue
            fields = {
                "id": a.get("id"),
                "title": a.get("title"),
                "body": a.get("body"),
                "url": a.get("html_url"),
                "locale": a.get("locale"),
                "section": "" if a.get("section_id") is None else str(a.get("section_id")),
                "tags": a.get("label_names") or (),
                "updated_at": a.get("updated_at"),
            }
            yield _record(fields, origin, html_body=True)


def detect_format(path: Path) -> str:
    """Guess the format of ``path``."""
    if path.is_dir():
        return "zendesk" if is_zendesk_export(path) else "markdown"
    ext = path.suffix.lower()
    if ext == ".csv":
        return "csv"
    if ext in {".jsonl", ".ndjson"}:
        return "jsonl"
    if ext == ".json":
        return "zendesk"
    if ext in HTML_EXT:
        return "html"
    if ext in MD_EXT | TXT_EXT:
        return "markdown"
    raise IngestError(f"{path}: cannot tell the format from the extension; pass --format")


def read_source(path: str | Path, fmt: str = "auto") -> Iterator[Parsed | Skipped]:
    """Read any supported source. Raises :class:`IngestError` if it cannot be read at all."""
    path = Path(path)
    if fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise IngestError(f"{path}: no such file or directory")
    if fmt == "auto":
        fmt = detect_format(path)
    elif fmt in ("csv", "jsonl") and path.is_dir():
        raise IngestError(f"{path} is a folder: --format {fmt} reads one file (leave --format auto for a folder)")
    elif fmt in ("markdown", "html") and path.is_file() and path.suffix.lower() in (".csv", ".jsonl", ".json"):
        guess = detect_format(path)
        raise IngestError(
            f"{path} looks like {guess}, not {fmt}: read as {fmt} it would become one article "
            f"(pass --format {guess}, or leave --format auto)"
        )
    if fmt in ("markdown", "html"):
        if path.is_dir():
            yield from read_folder(path)
        else:
            yield read_document(path, path)
    elif fmt == "csv":
        yield from read_csv(path)
    elif fmt == "jsonl":
        yield from read_jsonl(path)
    else:
        yield from read_zendesk(path)
