"""A deterministic fake encoder for unit tests: one dimension per keyword."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deflect.models.embedders.files import with_prompt
from deflect.models.embedders.protocol import EncoderViews, Quantize, Role

_WORD = re.compile(r"\w+", re.UNICODE)


class KeywordEmbedder:
    """Deterministic fake: one dimension per keyword (plus one 'other' bin), L2-normalised.

    Rankings under it are exact and predictable, which is what unit tests need. Both views
    are the same vector; it has no model directory and no trunk output.
    """

    bulk_batch_size = 32
    parallel = 1
    trunk_layer: int | None = None
    model_dir: Path | None = None
    quantize: Quantize = "int8"
    prompts: dict[str, str] = {}  # noqa: RUF012 - read only; symmetric, like MiniLM

    def __init__(self, keywords: Sequence[str], *, name: str = "keyword-fake", max_tokens: int = 256) -> None:
        self.keywords = [k.lower() for k in keywords]
        self._pos = {k: i for i, k in enumerate(self.keywords)}
        self.dimension = len(self.keywords) + 1
        self.name = name
        self.max_tokens = max_tokens
        self.fingerprint = hashlib.sha256("\n".join(self.keywords).encode()).hexdigest()[:16]

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False, role: Role = "query"
    ) -> np.ndarray:
        texts = with_prompt(self.prompts, texts, role)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                out[row, self._pos.get(word, self.dimension - 1)] += 1.0
            norm = np.linalg.norm(out[row])
            if norm > 0:
                out[row] /= norm
        return out

    def encode_views(
        self, texts: Sequence[str], *, batch_size: int = 32, trunk: bool = False, role: Role = "query"
    ) -> EncoderViews:
        if trunk:
            raise ValueError(f"{self.name} has no trunk output")
        v = self.encode(texts, role=role)
        return EncoderViews(v, v.copy())

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]
