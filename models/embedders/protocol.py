"""The encoder seam: what every embedder gives, with shapes and errors.

Every backend (:mod:`.torch_backend`, :mod:`.onnx_backend`, the test fake in :mod:`.fake`)
satisfies :class:`Embedder`; one contract suite (``tests/test_embedder_contract.py``) runs
against each of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

Quantize = Literal["int8", "fp32"]
#: what a text is to an asymmetric encoder (e5 reads ``query: `` and ``passage: `` prefixes);
#: a symmetric one (MiniLM) encodes both the same
Role = Literal["query", "passage"]


@dataclass(frozen=True)
class EncoderViews:
    """What one forward pass of an encoder gives for ``n`` texts.

    ``embedding``: ``(n, dimension)`` float32, the sentence embedding, rows of unit length.
    ``max_pooled``: ``(n, dimension)`` float32, the max over the token embeddings, unit rows.
    ``trunk``: with ``trunk=True`` only, one ``(tokens, hidden)`` float32 array per text (no
    padding): the token states entering the encoder's last layers, which the intent
    classifier's fine-tuned head reads (``models/intent_head.py``); else None.
    """

    embedding: np.ndarray
    max_pooled: np.ndarray
    trunk: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.embedding)

    def take(self, rows: Sequence[int] | np.ndarray) -> EncoderViews:
        """The views of the given rows, in that order."""
        idx = np.asarray(rows, dtype=np.int64)
        trunk = None if self.trunk is None else [self.trunk[i] for i in idx]
        return EncoderViews(self.embedding[idx], self.max_pooled[idx], trunk)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors. Every method is safe to call from several threads.

    Attributes:
        name: a readable model name (``sentence-transformers/all-MiniLM-L6-v2``).
        dimension: the length of every vector.
        fingerprint: a short hash of the weights; bundles record it, and loading a bundle
            built with another fingerprint is refused.
        max_tokens: the model's maximum input length, in its own tokens (longer input is
            truncated by ``encode``; chunking keeps chunks below it).
        bulk_batch_size: the batch size that encodes fastest in bulk (ingest).
        parallel: how many batches bulk encoding runs side by side (one per core for
            ``deflect ingest`` and ``deflect train``, one when serving).
        trunk_layer: the hidden-state index that ``encode_views(..., trunk=True)`` returns,
            or None when this embedder cannot return trunk states.
        model_dir: the sentence-transformers model directory, or None for an embedder that
            has none (the fake); fine-tuning and the intent head copy layers from it.
        quantize: how models derived from this encoder (a fine-tuned encoder, the intent
            head) are exported to ONNX: ``"int8"`` or ``"fp32"``.
        prompts: the prefix put before a text of each :data:`Role` (``{"query": "query: ",
            "passage": "passage: "}`` for e5; empty for a symmetric model), from the model
            directory's ``config_sentence_transformers.json``.
    """

    name: str
    dimension: int
    fingerprint: str
    max_tokens: int
    bulk_batch_size: int
    parallel: int
    trunk_layer: int | None
    model_dir: Path | None
    quantize: Quantize
    prompts: dict[str, str]

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False, role: Role = "query"
    ) -> np.ndarray:
        """``(len(texts), dimension)`` float32, rows of unit length (inner product = cosine).

        ``role``: ``"query"`` for what a customer typed (and intent examples),
        ``"passage"`` for article chunks and titles. An empty ``texts`` gives shape
        ``(0, dimension)``. ``progress`` shows a progress bar on standard error for long
        inputs."""
        ...

    def encode_views(
        self, texts: Sequence[str], *, batch_size: int = 32, trunk: bool = False, role: Role = "query"
    ) -> EncoderViews:
        """Both views of each text from one forward pass (and the trunk states with
        ``trunk=True``). ``embedding`` equals what :meth:`encode` gives for the same batch
        and ``role``.

        Raises :class:`ValueError` when ``trunk=True`` and :attr:`trunk_layer` is None."""
        ...

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """The character ``(start, end)`` of each model token of ``text``, in order (special
        tokens excluded, no truncation); chunking counts the model's own tokens with it."""
        ...
