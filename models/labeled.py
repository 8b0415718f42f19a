"""Labeled training texts: reading them (CSV or JSONL), and the stratified splits training uses."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deflect.core.errors import InvalidInputError


@dataclass
class LabeledTexts:
    """Training data read from a file: texts, labels, optional article ids, and origins."""

    texts: list[str]
    labels: list[str]
    article_ids: list[str]
    fingerprint: str
    path: str


def load_labeled_texts(path: str | Path, text_col: str = "text", label_col: str = "label") -> LabeledTexts:
    """Read CSV or JSONL training data; any problem raises :class:`InvalidInputError` naming it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{path}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 (byte {exc.start}); re-save the file as UTF-8") from exc
    rows: list[tuple[str, dict]] = []
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise InvalidInputError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise InvalidInputError(f"{path}:{n}: not a JSON object")
            rows.append((f"{path}:{n}", obj))
        columns = set().union(*(r.keys() for _, r in rows)) if rows else set()
    else:
        reader = csv.DictReader(text.splitlines(keepends=True))
        columns = set(reader.fieldnames or [])
        for row in reader:
            rows.append((f"{path}:{reader.line_num}", row))
    if not rows:
        raise InvalidInputError(f"{path}: no rows")
    for col in (text_col, label_col):
        if col not in columns:
            raise InvalidInputError(
                f"{path}: missing column {col!r} (columns: {', '.join(sorted(columns))}); use --text-col / --label-col",
                field=col,
            )
    texts, labels, arts = [], [], []
    for origin, r in rows:
        t, lab = r.get(text_col), r.get(label_col)
        if not isinstance(t, str) or not t.strip():
            raise InvalidInputError(f"{origin}: empty text in column {text_col!r}", field=text_col)
        if lab is None or not str(lab).strip():
            raise InvalidInputError(f"{origin}: empty label in column {label_col!r}", field=label_col)
        texts.append(t.strip())
        labels.append(str(lab).strip())
        arts.append(str(r.get("article_id") or "").strip())
    counts = Counter(labels)
    if len(counts) < 2:
        raise InvalidInputError(f"{path}: only one class ({next(iter(counts))!r}); at least two are needed")
    rare = sorted(c for c, n in counts.items() if n < 2)
    if rare:
        raise InvalidInputError(
            f"{path}: class {rare[0]!r} has fewer than two examples"
            + (f" (and {len(rare) - 1} more: {', '.join(rare[1:6])})" if len(rare) > 1 else "")
        )
    return LabeledTexts(texts, labels, arts, hashlib.sha256(raw).hexdigest()[:16], str(path))


def load_labeled_files(paths, text_col: str = "text", label_col: str = "label") -> LabeledTexts:
    """Several files of labeled texts as one training set (one file per language, ...);
    each file is read and checked as :func:`load_labeled_texts` does."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise InvalidInputError("no training file given")
    if len(paths) == 1:
        return load_labeled_texts(paths[0], text_col, label_col)
    parts = [load_labeled_texts(p, text_col, label_col) for p in paths]
    fingerprint = hashlib.sha256("\n".join(d.fingerprint for d in parts).encode()).hexdigest()[:16]
    return LabeledTexts(
        [t for d in parts for t in d.texts],
        [lab for d in parts for lab in d.labels],
        [a for d in parts for a in d.article_ids],
        fingerprint,
        ", ".join(d.path for d in parts),
    )


def split(labels: list[str], val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified split: each class keeps at least one training example, and gives
    ``val_split`` of its examples (at least one when it has three or more) to validation."""
    if not 0.0 < val_split < 0.9:
        raise InvalidInputError(f"--val-split must be between 0 and 0.9, got {val_split}", field="val_split")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    train, val = [], []
    for lab in sorted(by_class):
        idx = np.array(by_class[lab])
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_split))
        n_val = min(max(n_val, 1 if len(idx) >= 3 else 0), len(idx) - 1)
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return np.array(sorted(train)), np.array(sorted(val))


def kfold(labels: list[str], folds: int, seed: int) -> np.ndarray:
    """The fold (``0..folds-1``) of each row: stratified, each class dealt round-robin from a
    shuffled order and a rotating start, so every fold's training part (all other folds)
    keeps at least one example of every class that has two or more."""
    if folds < 2:
        raise InvalidInputError(f"--cv-folds must be 0 (hold out --val-split) or at least 2, got {folds}")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    fold = np.zeros(len(labels), dtype=np.int64)
    start = 0
    for lab in sorted(by_class):
        idx = np.array(by_class[lab])
        rng.shuffle(idx)
        fold[idx] = (start + np.arange(len(idx))) % folds
        start = (start + len(idx)) % folds
    return fold


def text_hash(text: str) -> str:
    """A short fingerprint of one training text (bundles record what they were fit on)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
