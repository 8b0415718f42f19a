"""The sentence-transformers model exported to ONNX (:mod:`.onnx_export`) and run by
onnxruntime: the serving encoder, and ingest's where the CPU has no native bfloat16."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deflect.core.errors import BundleError
from deflect.models.embedders.files import (
    TokenSpans,
    load_fast_tokenizer,
    model_fingerprint,
    model_name,
    read_max_tokens,
    read_prompts,
    trunk_layer,
    with_prompt,
)
from deflect.models.embedders.onnx_export import OUTPUTS, export_onnx
from deflect.models.embedders.protocol import EncoderViews, Quantize, Role


class OnnxEmbedder(TokenSpans):
    """The sentence-transformers model run by onnxruntime, with the model's fast tokenizer.

    The export is made on first use and cached under ``cache_root``. A cached export that
    onnxruntime cannot load is removed (so the next start re-exports) and raises
    :class:`BundleError`.
    """

    bulk_batch_size = 4  # measured: small length-sorted batches, one per core, beat large ones

    def __init__(
        self,
        model_dir: str | Path,
        cache_root: str | Path,
        *,
        quantize: Quantize = "int8",
        threads: int = 1,
        parallel: int = 1,
    ) -> None:
        import onnxruntime as ort

        self.model_dir: Path | None = Path(model_dir)
        self.fingerprint = model_fingerprint(self.model_dir)
        self.name = model_name(self.model_dir)
        self.max_tokens = read_max_tokens(self.model_dir)
        self.prompts = read_prompts(self.model_dir)
        self.quantize: Quantize = quantize
        self.parallel = max(1, parallel)
        self.onnx_path = export_onnx(self.model_dir, cache_root, quantize=quantize)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a corrupt cache file: remove it so the next start re-exports
            shutil.rmtree(self.onnx_path.parent, ignore_errors=True)
            raise BundleError(f"could not load ONNX model {self.onnx_path}: {exc}") from exc
        self._tokenizer = load_fast_tokenizer(self.model_dir)
        self._batch_tokenizer = load_fast_tokenizer(self.model_dir)
        self._batch_tokenizer.enable_truncation(max_length=self.max_tokens)
        self._batch_tokenizer.enable_padding()
        self._input_names = {i.name for i in self._session.get_inputs()}
        has_trunk = "trunk" in {o.name for o in self._session.get_outputs()}
        #: the hidden-state index of the "trunk" output (None: this export has none)
        self.trunk_layer: int | None = trunk_layer(self.model_dir) if has_trunk else None
        self.dimension = 0
        self.dimension = int(self.encode(["dimension probe"]).shape[1])

    def _run(self, texts: list[str], trunk: bool = False) -> list:
        encs = (
            [self._batch_tokenizer.encode(texts[0])] if len(texts) == 1 else self._batch_tokenizer.encode_batch(texts)
        )
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feed["token_type_ids"] = np.array([e.type_ids for e in encs], dtype=np.int64)
        if not trunk:
            return self._session.run(list(OUTPUTS), feed)
        emb, mx, states = self._session.run([*OUTPUTS, "trunk"], feed)
        lengths = mask.sum(axis=1)
        return [emb, mx, [states[j, : lengths[j]] for j in range(len(encs))]]

    def encode_views(
        self, texts: Sequence[str], *, batch_size: int = 32, trunk: bool = False, role: Role = "query"
    ) -> EncoderViews:
        """The sentence embedding and the max-pooled token embedding (both unit length), and
        with ``trunk=True`` (only when :attr:`trunk_layer` is set) each text's token states
        entering the encoder's last layers."""
        texts = with_prompt(self.prompts, texts, role)
        if trunk and self.trunk_layer is None:
            raise ValueError(f"the ONNX export of {self.name} has no trunk output")
        if not texts:
            empty = np.zeros((0, self.dimension), dtype=np.float32)
            return EncoderViews(empty, empty.copy(), [] if trunk else None)
        if len(texts) == 1:
            return EncoderViews(*self._run(texts, trunk))
        return EncoderViews(*self._batched(texts, batch_size, both=True, trunk=trunk))

    def _batched(self, texts: list[str], batch_size: int, *, both: bool, progress: bool = False, trunk: bool = False):
        # sort by length so each batch pads to similar lengths, then restore the order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        starts = list(range(0, len(texts), batch_size))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc="embedding", unit="chunk")

        def run(start: int):
            part = self._run([texts[i] for i in order[start : start + batch_size]], trunk)
            if bar is not None:
                bar.update(len(part[0]))
            return part

        if self.parallel > 1 and len(starts) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.parallel) as pool:  # onnxruntime releases the GIL
                out = list(pool.map(run, starts))
        else:
            out = [run(s) for s in starts]
        if bar is not None:
            bar.close()
        inv = np.empty(len(order), dtype=np.int64)
        inv[np.array(order)] = np.arange(len(order))
        emb = np.concatenate([o[0] for o in out]).astype(np.float32, copy=False)[inv]
        if not both:
            return emb
        mx = np.concatenate([o[1] for o in out]).astype(np.float32, copy=False)[inv]
        if not trunk:
            return emb, mx
        states = [s for o in out for s in o[2]]
        return emb, mx, [states[j] for j in inv]

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False, role: Role = "query"
    ) -> np.ndarray:
        texts = with_prompt(self.prompts, texts, role)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if len(texts) == 1:  # the serving path: one query per request
            return self._run(texts)[0]
        return self._batched(texts, batch_size, both=False, progress=progress)
