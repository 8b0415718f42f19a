"""Chunking: by headings first, then by length in the embedder's own tokens, with overlap."""

from __future__ import annotations

from collections.abc import Callable

from deflect.kb_ingest.clean import Section
from deflect.models.documents import Chunk

TokenSpans = Callable[[str], list[tuple[int, int]]]
# where a window may end: Latin and Chinese (full-width) sentence and clause ends, line ends
SENTENCE_ENDS = frozenset(".!?\n。！？；")
TOKEN_ENDS = frozenset(".!?:。！？；：")


def split_text(text: str, spans: list[tuple[int, int]], max_tokens: int, overlap: int) -> list[str]:
    """Windows of at most ``max_tokens`` tokens overlapping by ``overlap``, cut at token edges.

    A window prefers to end at a line or sentence end (:data:`SENTENCE_ENDS`, Chinese ones
    included: it never needs spaces) in its last third.
    """
    if max_tokens <= 0:
        raise ValueError("max_tokens must be positive")
    overlap = min(overlap, max_tokens // 2)
    if len(spans) <= max_tokens:
        return [text.strip()] if text.strip() else []
    pieces: list[str] = []
    start = 0
    while start < len(spans):
        end = min(start + max_tokens, len(spans))
        if end < len(spans):
            # back off to a sentence/line boundary if there is one in the last third
            for j in range(end - 1, start + (2 * max_tokens) // 3, -1):
                gap = text[spans[j][1] : spans[j + 1][0]] if j + 1 < len(spans) else ""
                tok = text[spans[j][0] : spans[j][1]]
                if any(ch in SENTENCE_ENDS for ch in gap) or tok[-1:] in TOKEN_ENDS:
                    end = j + 1
                    break
        piece = text[spans[start][0] : spans[end - 1][1]].strip()
        if piece:
            pieces.append(piece)
        if end >= len(spans):
            break
        start = max(end - overlap, start + 1)
    return pieces


def chunk_sections(
    article_id: str,
    sections: list[Section],
    token_spans: TokenSpans,
    *,
    max_tokens: int = 200,
    overlap: int = 40,
    min_tokens: int = 24,
) -> list[Chunk]:
    """Chunks of an article: one per heading section, long sections split by token windows.

    A section shorter than ``min_tokens`` is merged into the next section that shares its
    parent heading, so one-line sections do not become weak chunks of their own.
    """
    merged: list[tuple[Section, list[tuple[int, int]]]] = []  # each section with its token spans
    pending: Section | None = None
    for s in sections:
        if pending is not None:
            s = Section(
                pending.heading_path if len(pending.heading_path) <= len(s.heading_path) else s.heading_path,
                pending.text
                + "\n"
                + (s.heading_path[-1] + "\n" if s.heading_path and s.heading_path != pending.heading_path else "")
                + s.text,
            )
            pending = None
        spans = token_spans(s.text)  # tokenised once, used for the length check and the split
        if len(spans) < min_tokens and s is not sections[-1]:
            pending = s
            continue
        merged.append((s, spans))
    if pending is not None:
        merged.append((pending, token_spans(pending.text)))
    chunks: list[Chunk] = []
    for s, spans in merged:
        for piece in split_text(s.text, spans, max_tokens, overlap):
            chunks.append(Chunk(article_id, len(chunks), s.heading_path, piece))
    return chunks
