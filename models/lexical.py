"""Lexical retrieval: BM25 (bm25s) over each language's words (:mod:`deflect.models.language`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deflect.models.language import analyze


class BM25Index:
    """BM25 over a fixed list of documents; ``scores`` gives every document's score."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        import bm25s

        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._n = 0
        self._vocab: dict[str, int] = {}

    def __len__(self) -> int:
        return self._n

    def index(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> None:
        """Build the index (replaces any previous content); ``langs``: each text's language
        (None: detected)."""
        langs = list(langs) if langs is not None else [None] * len(texts)
        if len(langs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
        corpus = [analyze(t, lang) for t, lang in zip(texts, langs, strict=True)]
        self._n = len(corpus)
        if not self._n:
            return
        # bm25s needs at least one token per document
        corpus = [toks or ["\u2205"] for toks in corpus]
        self._bm25.index(corpus, show_progress=False)
        self._vocab = self._bm25.vocab_dict

    def scores(self, query: str, lang: str | None = None) -> np.ndarray:
        """BM25 score of every document for ``query`` in ``lang`` (None: detected); zeros
        when nothing matches."""
        if not self._n:
            return np.zeros(0, dtype=np.float32)
        toks = [t for t in analyze(query, lang) if t in self._vocab]
        if not toks:
            return np.zeros(self._n, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(toks), dtype=np.float32)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self._n:
            self._bm25.save(str(directory), show_progress=False)
        (directory / "count.txt").write_text(str(self._n))

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        import bm25s

        obj = cls()
        obj._n = int((directory / "count.txt").read_text())
        if obj._n:
            obj._bm25 = bm25s.BM25.load(str(directory), show_progress=False, mmap=False)
            obj._vocab = obj._bm25.vocab_dict
        return obj
