"""Export a sentence-transformers model to ONNX, optimise it and quantise it to int8.

The export is cached under ``DEFLECT_HOME/onnx/<fingerprint>-<EXPORT_VERSION>/``: ``model.onnx``
(fp32, as exported), ``model.opt.onnx`` (attention, LayerNorm and GELU fused) and
``model.int8.onnx`` (dynamically quantised, weights per channel). Each file is written
beside its place and renamed in, so an interrupted export is never used.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from deflect.core.atomic import atomic_replace
from deflect.models.embedders.files import model_fingerprint, trunk_layer
from deflect.models.embedders.protocol import Quantize
from deflect.models.embedders.quiet import quiet_root_logger, quiet_transformers

EXPORT_VERSION = "v3"  # bump when the exported graph changes (v2: max-pooled output; v3: trunk output)
OUTPUTS = ("embedding", "max_pooled")


def _onnx_wrapper(st_model, trunk: int | None = None):
    """The module exported to ONNX (torch imported here, so importing this file does not).

    Outputs the sentence embedding, the max-pooled token embedding and, when ``trunk`` is
    given, the token states after layer ``trunk`` (hidden state ``trunk``)."""
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self, st):
            super().__init__()
            self.st = st

        def forward(self, input_ids, attention_mask, token_type_ids):
            feats = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            out = self.st(feats)
            emb = torch.nn.functional.normalize(out["sentence_embedding"], p=2, dim=1)
            # a second view for the intent classifier: max over the token embeddings
            tok = out["token_embeddings"].masked_fill(attention_mask.unsqueeze(-1) == 0, -1e4)
            mx = torch.nn.functional.normalize(tok.max(dim=1).values, p=2, dim=1)
            if trunk is None:
                return emb, mx
            return emb, mx, out["all_layer_embeddings"][trunk]

    if trunk is not None:
        st_model[0].auto_model.config.output_hidden_states = True
    return Wrapper(st_model).eval()


def export_onnx(model_dir: str | Path, cache_root: str | Path, *, quantize: Quantize = "int8") -> Path:
    """Export ``model_dir`` to ONNX under ``cache_root/<fingerprint>-<version>/`` and return
    the file to serve: the int8 graph, or the optimised fp32 one with ``quantize="fp32"``.

    The fp32 graph is exported with ``torch.onnx.export`` of a wrapper around the whole
    sentence-transformers pipeline (transformer, pooling, normalisation). Files already in
    the cache are reused.
    """
    model_dir = Path(model_dir)
    fp = model_fingerprint(model_dir)
    target_dir = Path(cache_root) / f"{fp}-{EXPORT_VERSION}"
    fp32 = target_dir / "model.onnx"
    opt = target_dir / "model.opt.onnx"
    int8 = target_dir / "model.int8.onnx"
    wanted = int8 if quantize == "int8" else opt
    if wanted.exists():
        return wanted
    target_dir.mkdir(parents=True, exist_ok=True)
    if not fp32.exists():
        _export_fp32(model_dir, fp32)
    if not opt.exists():
        _optimize(model_dir, fp32, opt)
    if quantize == "int8" and not int8.exists():
        with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
            tmp_path = Path(tmp) / "model.int8.onnx"
            quantize_int8(opt, tmp_path)
            atomic_replace(tmp_path, int8)
    return wanted


def _export_fp32(model_dir: Path, dst: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    with quiet_transformers():
        st = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    trunk = trunk_layer(model_dir)
    wrapper = _onnx_wrapper(st, trunk)
    outputs = [*OUTPUTS] + ([] if trunk is None else ["trunk"])
    tok = st.tokenizer(["a short example", "another one"], padding=True, return_tensors="pt")
    ids = tok["input_ids"]
    mask = tok["attention_mask"]
    tt = tok.get("token_type_ids", torch.zeros_like(ids))
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmp_path = Path(tmp) / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(
                wrapper,
                (ids, mask, tt),
                str(tmp_path),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=outputs,
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "seq"},
                    "attention_mask": {0: "batch", 1: "seq"},
                    "token_type_ids": {0: "batch", 1: "seq"},
                    "embedding": {0: "batch"},
                    "max_pooled": {0: "batch"},
                    **({"trunk": {0: "batch", 1: "seq"}} if trunk is not None else {}),
                },
                opset_version=17,
                dynamo=False,
            )
        atomic_replace(tmp_path, dst)


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of an ONNX graph, weights per channel (they keep cosine
    ~0.99 to fp32 on the encoder; per-tensor weights drop it to ~0.92)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_root_logger():  # quantize_dynamic's pre-processing hint, on the root logger
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def _optimize(model_dir: Path, src: Path, dst: Path) -> None:
    """Fuse attention, LayerNorm and GELU with onnxruntime's transformer optimizer.

    Falls back to a plain copy for architectures the optimizer does not know.
    """
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}")
    try:
        from onnxruntime.transformers import optimizer

        cfg = json.loads((model_dir / "config.json").read_text())
        with warnings.catch_warnings(), quiet_root_logger():
            warnings.simplefilter("ignore")
            model = optimizer.optimize_model(
                str(src),
                model_type="bert",
                num_heads=int(cfg.get("num_attention_heads", 0)),
                hidden_size=int(cfg.get("hidden_size", 0)),
            )
        model.save_model_to_file(str(tmp))
    except Exception:  # noqa: BLE001 - any failure: serve the unoptimised graph
        shutil.copyfile(src, tmp)
    atomic_replace(tmp, dst)
