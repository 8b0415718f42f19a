"""Sentence embedders behind one protocol (:class:`Embedder`, in :mod:`.protocol`).

* :class:`TorchEmbedder` (:mod:`.torch_backend`) - sentence-transformers on PyTorch (the reference).
* :class:`OnnxEmbedder` (:mod:`.onnx_backend`) - the same model exported to ONNX
  (:mod:`.onnx_export`) and run by onnxruntime: serving and ingest default.
* :class:`KeywordEmbedder` (:mod:`.fake`) - a deterministic fake for unit tests.
* :func:`load_embedder` (:mod:`.factory`) - the one the settings ask for.

Every embedder returns L2-normalised ``float32`` rows, so inner product = cosine.
"""

from deflect.models.embedders.factory import cpu_has_bf16, load_embedder
from deflect.models.embedders.fake import KeywordEmbedder
from deflect.models.embedders.files import TRUNK_LAYERS, model_fingerprint, model_name, trunk_layer
from deflect.models.embedders.onnx_backend import OnnxEmbedder
from deflect.models.embedders.onnx_export import EXPORT_VERSION, export_onnx, quantize_int8
from deflect.models.embedders.protocol import Embedder, EncoderViews
from deflect.models.embedders.torch_backend import TorchEmbedder

__all__ = [
    "EXPORT_VERSION",
    "TRUNK_LAYERS",
    "Embedder",
    "EncoderViews",
    "KeywordEmbedder",
    "OnnxEmbedder",
    "TorchEmbedder",
    "cpu_has_bf16",
    "export_onnx",
    "load_embedder",
    "model_fingerprint",
    "model_name",
    "quantize_int8",
    "trunk_layer",
]
