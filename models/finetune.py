"""Fine-tune the sentence encoder on labeled intents, on the CPU, within a time budget.

A plain PyTorch loop over the sentence-transformers model: a cosine-softmax head over the
normalised sentence embedding (scale 20), cross-entropy, AdamW, bf16 autocast where the CPU
has native bf16. It stops at the end of ``epochs`` or when ``budget_s`` has passed,
whichever comes first, and saves a sentence-transformers model directory.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("deflect.finetune")


@dataclass
class FinetuneReport:
    steps: int
    epochs_done: float
    seconds: float
    stopped_by_budget: bool
    final_loss: float


def finetune_encoder(
    model_dir: str | Path,
    texts: list[str],
    labels: list[str],
    out_dir: Path,
    *,
    budget_s: float,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 3e-5,
    seed: int = 0,
    progress: bool = False,
) -> FinetuneReport:
    """Adapt the encoder at ``model_dir`` to ``labels`` and save it to ``out_dir``."""
    import torch
    from sentence_transformers import SentenceTransformer

    from deflect.models.embedders import cpu_has_bf16
    from deflect.models.embedders.quiet import quiet_transformers

    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    with quiet_transformers():
        model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    classes = sorted(set(labels))
    y = torch.tensor([classes.index(lab) for lab in labels])
    dim = (
        model.get_embedding_dimension()
        if hasattr(model, "get_embedding_dimension")
        else model.get_sentence_embedding_dimension()
    )
    head = torch.nn.Linear(dim, len(classes), bias=False)
    torch.nn.init.normal_(head.weight, std=0.02, generator=gen)
    opt = torch.optim.AdamW(
        [
            {"params": model.parameters(), "lr": lr},
            {"params": head.parameters(), "lr": 1e-2},
        ],
        weight_decay=0.01,
    )
    steps_per_epoch = max(1, (len(texts) + batch_size - 1) // batch_size)
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.1 * total + 1)))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if cpu_has_bf16() else contextlib.nullcontext()
    model.train()
    t0 = time.perf_counter()
    step, loss_v, by_budget = 0, float("nan"), False
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="fine-tuning", unit="step")
    for _epoch in range(epochs):
        order = rng.permutation(len(texts))
        for start in range(0, len(texts), batch_size):
            if time.perf_counter() - t0 > budget_s:
                by_budget = True
                break
            idx = order[start : start + batch_size]
            feats = (
                model.preprocess([texts[i] for i in idx])
                if hasattr(model, "preprocess")
                else model.tokenize([texts[i] for i in idx])
            )
            with autocast:
                emb = model(feats)["sentence_embedding"]
                emb = torch.nn.functional.normalize(emb.float(), dim=1)
                w = torch.nn.functional.normalize(head.weight, dim=1)
                loss = torch.nn.functional.cross_entropy(20.0 * emb @ w.T, y[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            loss_v = float(loss.detach())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_v:.3f}")
        if by_budget:
            break
    if bar is not None:
        bar.close()
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir))
    seconds = time.perf_counter() - t0
    log.info("fine-tuned %d steps in %.0fs (loss %.3f)", step, seconds, loss_v)
    return FinetuneReport(step, step / steps_per_epoch, seconds, by_budget, loss_v)
