"""HTML and Markdown to clean text, kept as sections under their heading path.

Scripts, styles, navigation, headers, footers and forms are dropped; headings start
sections; list items become ``- item`` lines; table rows become ``cell | cell`` lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt
from selectolax.lexbor import LexborHTMLParser

DROP = {
    "script",
    "style",
    "nav",
    "header",
    "footer",
    "aside",
    "noscript",
    "form",
    "iframe",
    "svg",
    "template",
    "button",
    "select",
    "textarea",
    "head",
    "-comment",
    "object",
    "canvas",
}
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
BLOCK = {
    "p",
    "div",
    "section",
    "article",
    "main",
    "blockquote",
    "pre",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "figure",
    "figcaption",
    "details",
    "summary",
    "hr",
    "body",
    "html",
    "center",
    "address",
}
_WS = re.compile(r"[ \t\r\f\v\u00a0]+")
_md = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")


@dataclass
class Section:
    """Text under a heading path (``()`` for text before the first heading)."""

    heading_path: tuple[str, ...]
    text: str


class _Walker:
    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.path: list[tuple[int, str]] = []
        self.lines: list[str] = []
        self.buf: list[str] = []
        self.title: str | None = None

    def flush(self) -> None:
        line = _WS.sub(" ", "".join(self.buf)).strip()
        self.buf = []
        if line:
            self.lines.extend(part.strip() for part in line.split("\n") if part.strip())

    def close_section(self) -> None:
        self.flush()
        if self.lines:
            self.sections.append(Section(tuple(h for _, h in self.path), "\n".join(self.lines)))
        self.lines = []

    def walk(self, node) -> None:
        for child in node.iter(include_text=True):
            tag = child.tag
            if tag == "-text":
                self.buf.append(child.text_content or "")
            elif tag in DROP or tag.startswith("-"):
                continue
            elif tag in HEADINGS:
                text = _WS.sub(" ", child.text(separator=" ", strip=True)).strip()
                if not text:
                    continue
                self.close_section()
                level = HEADINGS[tag]
                if level == 1 and self.title is None and not self.path and not self.sections:
                    self.title = text
                while self.path and self.path[-1][0] >= level:
                    self.path.pop()
                self.path.append((level, text))
            elif tag == "li":
                self.flush()
                self.buf.append("- ")
                self.walk(child)
                self.flush()
            elif tag == "tr":
                self.flush()
                cells = [
                    _WS.sub(" ", c.text(separator=" ", strip=True)).strip()
                    for c in child.iter()
                    if c.tag in ("td", "th")
                ]
                cells = [c for c in cells if c]
                if cells:
                    self.lines.append(" | ".join(cells))
            elif tag == "br":
                self.buf.append("\n")
            elif tag == "pre":
                self.flush()
                code = (child.text(deep=True) or "").strip("\n")
                self.lines.extend(line.rstrip() for line in code.splitlines() if line.strip())
            elif tag in BLOCK:
                self.flush()
                self.walk(child)
                self.flush()
            else:
                self.walk(child)


def html_to_sections(html: str) -> tuple[list[Section], str | None]:
    """Sections of clean text from HTML, and the first ``<h1>`` (or ``<title>``) if any."""
    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    doc_title = title_node.text(strip=True) if title_node else None
    root = tree.body or tree.root
    w = _Walker()
    if root is not None:
        w.walk(root)
    w.close_section()
    return w.sections, (w.title or doc_title or None)


def markdown_to_html(text: str) -> str:
    """CommonMark (with tables) to HTML."""
    return _md.render(text)


def markdown_to_sections(text: str) -> tuple[list[Section], str | None]:
    """Sections of clean text from Markdown, and its first level-1 heading if any."""
    return html_to_sections(markdown_to_html(text))


def text_to_sections(text: str) -> tuple[list[Section], str | None]:
    """Plain text: paragraphs kept, whitespace collapsed, one section."""
    lines = [_WS.sub(" ", ln).strip() for ln in text.splitlines()]
    body = "\n".join(ln for ln in lines if ln)
    return ([Section((), body)] if body else []), None


_TAG = re.compile(r"<(p|div|br|h[1-6]|ul|ol|li|table|span|a|strong|em|b|i|img|section)\b[^>]*>", re.I)


def looks_like_html(text: str) -> bool:
    """True when ``text`` contains common HTML tags."""
    return bool(_TAG.search(text))


def sections_to_text(sections: list[Section]) -> str:
    """The article body as plain text: each heading on its own line, then its text."""
    out: list[str] = []
    last: tuple[str, ...] = ()
    for s in sections:
        if s.heading_path and s.heading_path != last:
            out.append(s.heading_path[-1])
        last = s.heading_path
        out.append(s.text)
    return "\n".join(out)
