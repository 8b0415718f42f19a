"""Intent benchmarks on BANKING77 (../shared/datasets/banking77), each beside its baselines
(logistic regression on the sentence embeddings; TF-IDF with a linear SVM) trained in the same run."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from bench.datasets import SHARED
from deflect.models.classification_metrics import accuracy, macro_f1, oos_auroc
from deflect.models.encoding import ENCODE_BATCH, encode_queries
from deflect.models.labeled import LabeledTexts
from deflect.models.training import TrainOptions, train

PUBLISHED = 0.9336  # Casanueva et al. 2020, USE+ConveRT, full training data


def _load(path: Path) -> tuple[list[str], list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def run(
    embedder, home: Path, row, notes: list[str], *, held_out: int = 20, seed: int = 0, finetune_budget_s: float = 480.0
) -> None:
    """Default mode, baselines, and the unknown-intents experiment."""
    root = SHARED / "banking77"
    Xtr, ytr = _load(root / "train.csv")
    Xte, yte = _load(root / "test.csv")
    # test texts encoded one at a time, as serving encodes a query (models.encoding.ENCODE_BATCH),
    # through the server's own function, for each model
    te_emb = embedder.encode(Xte, batch_size=ENCODE_BATCH)

    # baselines, same run
    t0 = time.perf_counter()
    tr_emb = embedder.encode(Xtr, batch_size=32)
    lr = LogisticRegression(C=10, max_iter=3000).fit(tr_emb, ytr)
    lr_acc = accuracy(yte, lr.predict(te_emb))
    lr_f1 = macro_f1(yte, lr.predict(te_emb))
    lr_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    svm = LinearSVC(C=1.0).fit(vec.fit_transform(Xtr), ytr)
    sv_pred = svm.predict(vec.transform(Xte))
    sv_acc, sv_f1 = accuracy(yte, sv_pred), macro_f1(yte, sv_pred)
    sv_s = time.perf_counter() - t0
    base = f"LR on embeddings {lr_acc:.4f} / TF-IDF+SVM {sv_acc:.4f} / published {PUBLISHED:.4f}"

    # default mode, through the same function as `deflect train`
    t0 = time.perf_counter()
    data = LabeledTexts(Xtr, ytr, [""] * len(Xtr), "banking77", str(root / "train.csv"))
    res = train(data, home, embedder, TrainOptions(cv_folds=5, seed=seed))
    notes.append(
        "banking77: models are fit on the whole training set; temperature, out-of-scope threshold and validation "
        "figures come from 5-fold cross-validation on it (out-of-fold predictions); the fine-tuned head is trained "
        "on 90% of each intent, and its weight, the temperature, the out-of-scope threshold and the validation "
        "figures then come from the other 10%; --finetune holds out 10% (its encoder would otherwise have seen "
        "every validation text); test texts are encoded one at a time, as served; the test set is only used for "
        "these figures"
    )
    secs = time.perf_counter() - t0
    from deflect.models.registry import load_model

    model = load_model(home, res.version, embedder)
    clf, encoding = model.classifier, encode_queries(embedder, Xte, model)
    pred = clf.predict(Xte, encoding=encoding)
    head = res.manifest.get("head") or {}
    row("banking77", "default classifier", "accuracy", accuracy(yte, pred), base, ">= 0.945")
    weight, clf.head_weight = clf.head_weight, 0.0
    alone = clf.predict(Xte, encoding=encoding)  # weight 0: the head's input is not read
    clf.head_weight = weight
    row(
        "banking77",
        "default classifier",
        "accuracy without its head",
        accuracy(yte, alone),
        f"head weight {head.get('weight', 0):g} (chosen on {head.get('validation_rows', 0)} validation texts), "
        f"trained in {head.get('seconds', 0):.0f}s",
        "",
    )
    row("banking77", "default classifier", "macro-F1", macro_f1(yte, pred), f"LR {lr_f1:.4f} / TF-IDF+SVM {sv_f1:.4f}")
    row(
        "banking77",
        "default classifier",
        "train seconds",
        secs,
        f"LR {lr_s:.1f}s / TF-IDF+SVM {sv_s:.1f}s (incl. encoding)",
        "<= 300",
    )

    # --finetune: the encoder adapted to the training split, bounded by a time budget
    t0 = time.perf_counter()
    res = train(
        data, home, embedder, TrainOptions(val_split=0.1, seed=seed, finetune=True, time_budget_s=finetune_budget_s)
    )
    secs = time.perf_counter() - t0
    clf = load_model(home, res.version, embedder).classifier
    pred = clf.predict(Xte)  # encodes with the fine-tuned encoder (ONNX int8)
    enc = res.manifest["encoder"]
    row("banking77", "--finetune", "accuracy", accuracy(yte, pred), base, "")
    row("banking77", "--finetune", "macro-F1", macro_f1(yte, pred), f"LR {lr_f1:.4f} / TF-IDF+SVM {sv_f1:.4f}")
    row(
        "banking77",
        "--finetune",
        "train seconds",
        secs,
        f"budget {finetune_budget_s:.0f}s: {enc['steps']} steps, {enc['epochs']} epochs",
        "",
    )

    unknown_intents(embedder, home, row, notes, Xtr, ytr, Xte, yte, held_out=held_out, seed=seed)


def run_other_encoder(embedder, name: str, home: Path, row, notes: list[str], *, seed: int = 0) -> None:
    """BANKING77 with another encoder (section ``banking77 <name>``): the default classifier
    beside LR on the same embeddings, and the unknown-intents experiment."""
    root = SHARED / "banking77"
    Xtr, ytr = _load(root / "train.csv")
    Xte, yte = _load(root / "test.csv")
    section = f"banking77 {name}"
    data = LabeledTexts(Xtr, ytr, [""] * len(Xtr), "banking77", str(root / "train.csv"))
    res = train(data, home, embedder, TrainOptions(cv_folds=5, seed=seed))
    from deflect.models.registry import load_model

    model = load_model(home, res.version, embedder)
    encoding = encode_queries(embedder, Xte, model)
    pred = model.classifier.predict(Xte, encoding=encoding)
    lr = LogisticRegression(C=10, max_iter=3000).fit(embedder.encode(Xtr, batch_size=32), ytr)
    lr_pred = lr.predict(encoding.embedding)
    row(
        section,
        "default classifier",
        "accuracy",
        accuracy(yte, pred),
        f"LR on {name} embeddings {accuracy(yte, lr_pred):.4f}",
    )
    row(section, "default classifier", "macro-F1", macro_f1(yte, pred), f"LR {macro_f1(yte, lr_pred):.4f}")
    unknown_intents(embedder, home, row, notes, Xtr, ytr, Xte, yte, section=section, seed=seed)


def unknown_intents(
    embedder, home: Path, row, notes: list[str], Xtr, ytr, Xte, yte, *, held_out: int = 20, seed: int = 0,
    section: str = "banking77",
) -> None:  # fmt: skip
    """Train on 57 intents, hold 20 out (seeded); the out-of-scope threshold comes from the
    validation split only."""
    from deflect.models.registry import load_model

    labels = sorted(set(ytr))
    rng = np.random.default_rng(seed)
    out = sorted(rng.choice(labels, size=held_out, replace=False).tolist())
    keep = [i for i, y in enumerate(ytr) if y not in out]
    data = LabeledTexts(
        [Xtr[i] for i in keep], [ytr[i] for i in keep], [""] * len(keep), "b77-57", "banking77 (57 intents)"
    )
    res = train(data, home, embedder, TrainOptions(cv_folds=5, seed=seed))
    model = load_model(home, res.version, embedder)
    clf = model.classifier
    preds = model.predict(Xte, encode_queries(embedder, Xte, model))
    held_in = [i for i, y in enumerate(yte) if y not in out]
    held = [i for i, y in enumerate(yte) if y in out]
    in_acc = float(np.mean([preds[i].label == yte[i] and not preds[i].out_of_scope for i in held_in]))
    plain = float(np.mean([preds[i].label == yte[i] for i in held_in]))
    rec = float(np.mean([preds[i].out_of_scope for i in held]))
    auc = oos_auroc([preds[i].oos_score for i in held_in], [preds[i].oos_score for i in held])
    row(
        section,
        "unknown intents (57 in / 20 out)",
        "in-scope acc.",
        in_acc,
        f"without rejection {plain:.4f}",
        ">= 0.94",
    )
    row(
        section,
        "unknown intents (57 in / 20 out)",
        "held-out recall",
        rec,
        f"threshold {clf.oos_threshold:.3f} chosen on validation texts ({res.metrics['n']})",
        ">= 0.70",
    )
    row(section, "unknown intents (57 in / 20 out)", "AUROC", auc, "")
    if section == "banking77":
        notes.append("banking77 held-out intents (seed 0): " + ", ".join(out))


def demo_effects(ingest_embedder, query_embedder, work: Path, row, notes: list[str]) -> None:
    """On the demo: does the intent model help retrieval (boost) and abstention (out of scope)?

    Every configuration runs the real engine on the 348 labeled demo queries; the model is
    trained on examples/intents.csv (written separately from the queries)."""
    from deflect.config import Settings
    from deflect.engine import Engine, SuggestQuery
    from deflect.eval.metrics import mrr_at_k, recall_at_k
    from deflect.eval.queries import load_queries
    from deflect.kb_ingest.pipeline import ingest
    from deflect.models.labeled import load_labeled_texts

    root = Path(__file__).resolve().parents[1] / "examples"
    home = work / "demo-intent-home"
    ingest(root / "helpcenter", home, ingest_embedder)
    data = load_labeled_texts(root / "intents.csv")
    train(data, home, query_embedder, TrainOptions(oos_label="out_of_scope", promote=True))
    queries = load_queries(root / "demo_queries.csv")
    rel = [q.relevant for q in queries]
    configs = {
        "no intent model": dict(_no_model=True),
        "model, no boost, no OOS abstention": dict(intent_boost=0.0, oos_override_score=0.0),
        "model, boost 0.05": dict(intent_boost=0.05, oos_override_score=0.0),
        "model, boost 0.10": dict(intent_boost=0.10, oos_override_score=0.0),
        "model, boost 0.05, OOS abstain (override 0.60)": dict(intent_boost=0.05, oos_override_score=0.6),
        "model, boost 0.05, OOS abstain (no override)": dict(intent_boost=0.05, oos_override_score=2.0),
    }
    for name, cfg in configs.items():
        no_model = cfg.pop("_no_model", False)
        s = Settings(home=home, intent_articles=str(root / "intent_articles.json"), reload_interval=3600, **cfg)
        engine = Engine(s, query_embedder)
        if no_model:
            engine.model.get_optional = lambda: None  # type: ignore[method-assign]
        ranked, abst = [], []
        for q in queries:
            # encoded by the engine, one query at a time, as the server does
            r = engine.suggest(SuggestQuery(subject=q.subject, description=q.description, k=10))
            ranked.append([x.article_id for x in r.would_show])
            abst.append(r.abstained)
        ans = [i for i, r_ in enumerate(rel) if r_]
        unans = [i for i, r_ in enumerate(rel) if not r_]
        shown_ok = [ranked[i][0] in rel[i] for i in range(len(rel)) if not abst[i] and ranked[i]]
        row(
            "demo+intent",
            name,
            "recall@1",
            recall_at_k(ranked, rel, 1),
            f"recall@3 {recall_at_k(ranked, rel, 3):.3f}",
            "",
        )
        row("demo+intent", name, "mrr@10", mrr_at_k(ranked, rel, 10), "")
        row(
            "demo+intent",
            name,
            "abstain unans.",
            float(np.mean([abst[i] for i in unans])),
            f"answerable abstained {np.mean([abst[i] for i in ans]):.3f}; precision@1 of shown {np.mean(shown_ok):.3f}",
        )
