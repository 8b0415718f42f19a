"""Benchmark data from ../shared/datasets (never copied into the project)."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from deflect.eval.queries import LabeledQuery

SHARED = Path(os.environ.get("DEFLECT_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def missing(name: str) -> str | None:
    """A message if the dataset ``name`` is absent, else None."""
    p = SHARED / name
    return None if p.exists() else f"dataset {name!r} not found at {p} (set DEFLECT_SHARED_DATASETS)"


def stackfaq(out_jsonl: Path) -> list[LabeledQuery]:
    """Write StackFAQ's qapairs as a JSONL knowledge base; return its rephrasings as queries."""
    root = ET.parse(SHARED / "stackfaq" / "stackExchange-FAQ.xml").getroot()
    queries: list[LabeledQuery] = []
    with open(out_jsonl, "w") as f:
        for i, qa in enumerate(root.iter("qapair")):
            aid = f"faq-{i:03d}"
            title = " ".join((qa.findtext("question") or "").split())
            body = "\n\n".join((a.text or "").strip() for a in qa.findall("answer"))
            f.write(json.dumps({"id": aid, "title": title, "body": body}) + "\n")
            for r in qa.findall("rephr"):
                text = " ".join((r.text or "").split())
                if text and text != "*":
                    queries.append(LabeledQuery("", text, frozenset({aid}), "stackfaq"))
    return queries
