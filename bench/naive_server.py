"""The naive baseline for the HTTP benchmark: PyTorch encoder, numpy dot product over every
chunk vector, best chunk per article, served by FastAPI + uvicorn like the product."""

from __future__ import annotations

import os
import sys

from fastapi import FastAPI
from pydantic import BaseModel

from deflect.config import default_model_path
from deflect.models.embedders import TorchEmbedder
from deflect.models.index_bundle import load_current

home = os.environ["DEFLECT_HOME"]
embedder = TorchEmbedder(default_model_path())
bundle = load_current(home)
embedder.encode(["warm up"])
app = FastAPI()


class Req(BaseModel):
    subject: str = ""
    description: str = ""
    k: int = 3


@app.post("/v1/suggest")
def suggest(req: Req) -> dict:
    q = embedder.encode([f"{req.subject}\n{req.description}"])[0]
    scores = bundle.vectors @ q
    best: dict[int, float] = {}
    for c, s in enumerate(scores.tolist()):
        a = int(bundle.chunk_article[c])
        if s > best.get(a, -2.0):
            best[a] = s
    top = sorted(best.items(), key=lambda x: -x[1])[: req.k]
    return {"suggestions": [{"article_id": bundle.article_ids[a], "score": float(s)} for a, s in top]}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
