"""Lexical retrieval: BM25 (bm25s) over stemmed, stop-worded tokens."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_TOKEN = re.compile(r"(?u)\b\w\w+\b")


class _Analyzer:
    def __init__(self) -> None:
        import Stemmer
        from bm25s.stopwords import STOPWORDS_EN

        self._stem = Stemmer.Stemmer("english").stemWords
        self._stop = set(STOPWORDS_EN)

    def __call__(self, text: str) -> list[str]:
        words = [w for w in _TOKEN.findall(text.lower()) if w not in self._stop]
        return self._stem(words)


_analyzer: _Analyzer | None = None


def analyze(text: str) -> list[str]:
    """Lower-case, drop English stop words, Snowball-stem."""
    global _analyzer
    if _analyzer is None:
        _analyzer = _Analyzer()
    return _analyzer(text)


class BM25Index:
    """BM25 over a fixed list of documents; ``scores`` gives every document's score."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        import bm25s

        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._n = 0
        self._vocab: dict[str, int] = {}

    def __len__(self) -> int:
        return self._n

    def index(self, texts: Sequence[str]) -> None:
        """Build the index (replaces any previous content)."""
        corpus = [analyze(t) for t in texts]
        self._n = len(corpus)
        if not self._n:
            return
        # bm25s needs at least one token per document
        corpus = [toks or ["\u2205"] for toks in corpus]
        self._bm25.index(corpus, show_progress=False)
        self._vocab = self._bm25.vocab_dict

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (zeros when nothing matches)."""
        if not self._n:
            return np.zeros(0, dtype=np.float32)
        toks = [t for t in analyze(query) if t in self._vocab]
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
