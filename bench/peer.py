"""The peer baseline: txtai's hybrid search (BM25 + dense, its own fusion) with the same
encoders, on the same articles and queries as deflect.

txtai is what an engineer could pick instead of deflect. It is run as its documentation
describes a hybrid index (``Embeddings(path=..., hybrid=True)``): one document per article
(title and body), the encoder loaded from the same local model directory (nothing is
downloaded), and e5's ``query: `` / ``passage: `` prefixes given as txtai ``instructions``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from deflect.kb_ingest.sources import Parsed, read_source


def articles_of(kb: Path | Sequence[Path]) -> list[tuple[str, str]]:
    """(id, title + body) of every article deflect's own reader finds in ``kb``."""
    sources = [kb] if isinstance(kb, (str, Path)) else list(kb)
    out = []
    for src in sources:
        for rec in read_source(src, "auto"):
            if isinstance(rec, Parsed):
                out.append((rec.article.id, f"{rec.article.title}\n{rec.article.body}"))
    return out


def txtai_rankings(
    kb: Path | Sequence[Path], texts: Sequence[str], model_dir: str | Path, *, prompts: dict | None = None, k: int = 10
) -> list[list[str]]:
    """txtai hybrid search over ``kb``: the ``k`` best article ids for each query text."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from txtai import Embeddings

    config = {"path": str(model_dir), "hybrid": True, "content": False, "batch": 32, "encodebatch": 32}
    if prompts:
        config["instructions"] = {"query": prompts.get("query", ""), "data": prompts.get("passage", "")}
    emb = Embeddings(config)
    emb.index([(aid, text, None) for aid, text in articles_of(kb)])
    results = emb.batchsearch(list(texts), k)
    return [[str(uid) for uid, _score in res] for res in results]
