"""Dense vector indexes over unit vectors (inner product = cosine), backed by FAISS."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import faiss
import numpy as np

from deflect.core.errors import BundleError


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest neighbours by inner product.

    ``add`` takes a float32 array ``(n, dim)``; ids are positions in insertion order.
    ``search`` takes ``(q, dim)`` and returns ``(scores, ids)``, both ``(q, k)``; missing
    neighbours (an index smaller than ``k``) have id ``-1`` and score ``-inf``.
    """

    dimension: int
    kind: str

    def __len__(self) -> int: ...

    def add(self, vectors: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def save(self, path: Path) -> None: ...


class FaissIndex:
    """Exact inner product (``IndexFlatIP``) or approximate HNSW (``IndexHNSWFlat``).

    Use :func:`build_index` to choose by size.
    """

    def __init__(self, dimension: int, kind: str = "flat", *, hnsw_m: int = 32, ef_search: int = 128) -> None:
        self.dimension = dimension
        self.kind = kind
        if kind == "flat":
            self._index = faiss.IndexFlatIP(dimension)
        elif kind == "hnsw":
            self._index = faiss.IndexHNSWFlat(dimension, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self._index.hnsw.efConstruction = 200
            self._index.hnsw.efSearch = ef_search
        else:
            raise ValueError(f"unknown index kind {kind!r} (flat or hnsw)")

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f"expected vectors of shape (n, {self.dimension}), got {vectors.shape}")
        if len(vectors):
            self._index.add(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dimension:
            raise ValueError(f"expected queries of dimension {self.dimension}, got {queries.shape[1]}")
        if len(self) == 0 or k <= 0:
            n = queries.shape[0]
            return np.full((n, max(k, 0)), -np.inf, dtype=np.float32), np.full((n, max(k, 0)), -1, dtype=np.int64)
        scores, ids = self._index.search(queries, k)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path) -> FaissIndex:
        """Read an index written by :meth:`save`."""
        try:
            raw = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise BundleError(f"cannot read vector index {path}: {exc}") from exc
        obj = cls.__new__(cls)
        obj._index = raw
        obj.dimension = raw.d
        obj.kind = "hnsw" if isinstance(raw, faiss.IndexHNSWFlat) else "flat"
        if obj.kind == "hnsw":
            raw.hnsw.efSearch = 128
        return obj


def build_index(vectors: np.ndarray, *, ann_threshold: int = 100_000) -> FaissIndex:
    """An exact index for up to ``ann_threshold`` vectors, HNSW above it."""
    kind = "hnsw" if len(vectors) > ann_threshold else "flat"
    index = FaissIndex(vectors.shape[1], kind)
    index.add(vectors)
    return index
