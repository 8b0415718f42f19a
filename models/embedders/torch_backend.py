"""sentence-transformers on PyTorch, CPU: the reference encoder (and ingest's encoder on
CPUs with native bfloat16)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deflect.models.embedders.files import (
    TokenSpans,
    load_fast_tokenizer,
    model_fingerprint,
    model_name,
    read_max_tokens,
    read_prompts,
    with_prompt,
)
from deflect.models.embedders.protocol import EncoderViews, Quantize, Role
from deflect.models.embedders.quiet import quiet_transformers


class TorchEmbedder(TokenSpans):
    """sentence-transformers on PyTorch, CPU. Loads the model on first use.

    ``bf16=True`` runs under ``torch.autocast(bfloat16)`` (fast on CPUs with AMX / AVX512-BF16).
    ``parallel > 1`` encodes large inputs as that many single-threaded batches side by side.
    It has no trunk output (:attr:`trunk_layer` is None): the intent head needs the ONNX export.
    """

    bulk_batch_size = 32
    trunk_layer: int | None = None

    def __init__(
        self, model_dir: str | Path, *, bf16: bool = False, parallel: int = 1, quantize: Quantize = "int8"
    ) -> None:
        self.model_dir: Path | None = Path(model_dir)
        self.bf16 = bf16
        self.parallel = max(1, parallel)
        self.quantize: Quantize = quantize
        self.fingerprint = model_fingerprint(self.model_dir)
        self.name = model_name(self.model_dir)
        self.max_tokens = read_max_tokens(self.model_dir)
        self.prompts = read_prompts(self.model_dir)
        self._tokenizer = load_fast_tokenizer(self.model_dir)
        self._model = None
        self._lock = threading.Lock()
        self.dimension = self._read_dimension()

    def _read_dimension(self) -> int:
        try:
            return int(
                json.loads((self.model_dir / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"]
            )
        except (OSError, ValueError, KeyError):
            return int(self.model.get_sentence_embedding_dimension())

    @property
    def model(self):
        """The loaded SentenceTransformer (loaded once, on first use)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from sentence_transformers import SentenceTransformer

                    with quiet_transformers():
                        self._model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
        return self._model

    def _autocast(self):
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False, role: Role = "query"
    ) -> np.ndarray:
        texts = with_prompt(self.prompts, texts, role)
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        import torch

        def run(part: list[str]) -> np.ndarray:
            with self._autocast(), torch.inference_mode():  # both are thread-local
                return self.model.encode(
                    part,
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=progress and self.parallel == 1,
                )

        if self.parallel > 1 and len(texts) >= 8 * self.parallel:
            # one single-threaded encode per core (measured ~4% faster than one with two threads);
            # interleaving the length-sorted texts gives every share the same mix of lengths
            from concurrent.futures import ThreadPoolExecutor

            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            shares = [order[r :: self.parallel] for r in range(self.parallel)]

            def run_single_threaded(share: list[int]) -> np.ndarray:
                torch.set_num_threads(1)  # affects this pool thread only, not the caller
                return run([texts[i] for i in share])

            before = torch.get_num_threads()
            try:
                with ThreadPoolExecutor(self.parallel) as pool:
                    parts = list(pool.map(run_single_threaded, shares))
            finally:
                torch.set_num_threads(before)  # the setting can leak to the process: restore it
            out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
            for sh, part in zip(shares, parts, strict=True):
                out[np.array(sh)] = part
        else:
            out = run(texts)
        return np.ascontiguousarray(out, dtype=np.float32)

    def encode_views(
        self, texts: Sequence[str], *, batch_size: int = 32, trunk: bool = False, role: Role = "query"
    ) -> EncoderViews:
        """The sentence embedding and the max-pooled token embedding (both unit length)."""
        if trunk:
            raise ValueError(f"the PyTorch encoder of {self.name} has no trunk output (use the ONNX encoder)")
        texts = with_prompt(self.prompts, texts, role)
        if not texts:
            empty = np.zeros((0, self.dimension), dtype=np.float32)
            return EncoderViews(empty, empty.copy())
        import torch

        with self._autocast(), torch.inference_mode():
            out = self.model.encode(texts, batch_size=batch_size, output_value=None)
        emb = np.stack([o["sentence_embedding"].float().numpy() for o in out])
        mx = np.stack([o["token_embeddings"].float().max(0).values.numpy() for o in out])
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        mx /= np.linalg.norm(mx, axis=1, keepdims=True)
        return EncoderViews(emb.astype(np.float32), mx.astype(np.float32))
