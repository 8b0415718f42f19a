"""`make bench`: retrieval quality, serving throughput and ingest speed, each beside its
baseline measured in the same run. Prints one table and rewrites docs/benchmarks.md's results
section. Reads ../shared/datasets (never copied); says clearly what is missing.

    python -m bench.run [--only stackfaq,demo,multilingual,xsid,http,ingest,banking77,widget,report,redaction,mail]
                        [--seconds 10] [--report-sizes 20000,200000,2000000] [--no-readme]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.datasets import missing, stackfaq  # noqa: E402
from deflect.config import MINILM, Settings, default_model_path, defaults_for  # noqa: E402
from deflect.eval.metrics import abstention, precision_coverage  # noqa: E402
from deflect.eval.queries import load_queries  # noqa: E402
from deflect.eval.retrieval import rank_queries, retrieval_metrics  # noqa: E402
from deflect.kb_ingest.pipeline import ingest  # noqa: E402
from deflect.models.embedders import OnnxEmbedder, TorchEmbedder, load_embedder  # noqa: E402
from deflect.models.index_bundle import load_current  # noqa: E402
from deflect.models.vector_index import FaissIndex  # noqa: E402

DEMO_KB = ROOT / "examples" / "helpcenter"
DEMO_QUERIES = ROOT / "examples" / "demo_queries.csv"
RESULTS = ROOT / "bench" / "results"
ALL = {
    "stackfaq",
    "demo",
    "http",
    "ingest",
    "banking77",
    "widget",
    "multilingual",
    "xsid",
    "http-e5",
    "calibrate",
    "ingest-e5",
    "banking77-e5",
    "e5-int8",
    "report",
    "redaction",
    "mail",
}
rows: list[dict] = []
notes: list[str] = []


def row(section: str, system: str, metric: str, value: float | str, baseline: str = "", target: str = "") -> None:
    rows.append(
        {"section": section, "system": system, "metric": metric, "value": value, "baseline": baseline, "target": target}
    )
    v = f"{value:.3f}" if isinstance(value, float) else str(value)
    print(f"  {section:<10} {system:<34} {metric:<14} {v:>10}  {baseline}  {target}", flush=True)


def machine() -> str:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        cpu = ""
    return f"{os.cpu_count()} cores, {cpu or platform.processor()}, Python {platform.python_version()}"


class Embedders:
    def __init__(self, cache: Path) -> None:
        path = default_model_path()
        self.int8 = OnnxEmbedder(path, cache, quantize="int8", threads=1, parallel=os.cpu_count() or 1)
        self.fp32 = OnnxEmbedder(path, cache, quantize="fp32", threads=1, parallel=os.cpu_count() or 1)
        self.torch = TorchEmbedder(path)
        self.ingest = load_embedder(Settings(home=cache.parent), purpose="ingest")  # what `deflect ingest` uses
        notes.append(
            f"ingest encoder (auto): {type(self.ingest).__name__}"
            f"{' bf16' if getattr(self.ingest, 'bf16', False) else ''}; query encoder: ONNX int8"
        )


def quality(name: str, kb, queries, embs: Embedders, work: Path, settings: Settings) -> None:
    """Lexical, dense (PyTorch / ONNX fp32 / ONNX int8) and the default fusion on one data set."""
    texts = [q.text for q in queries]
    rel = [q.relevant for q in queries]
    defaults = defaults_for(MINILM)
    results = {}
    for label, emb in (("torch", embs.torch), ("fp32", embs.fp32), ("int8", embs.int8)):
        home = work / f"{name}-{label}"
        ingest(kb, home, emb, chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap)
        bundle = load_current(home, emb)
        vecs = emb.encode(texts, batch_size=16)
        results[{"torch": "dense, PyTorch", "fp32": "dense, ONNX fp32", "int8": "dense, ONNX int8"}[label]] = (
            rank_queries(bundle, emb, texts, mode="dense", vectors=vecs)
        )
    # the product as shipped: index built by the ingest encoder, queries by ONNX int8
    home = work / f"{name}-product"
    ingest(kb, home, embs.ingest, chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap)
    bundle = load_current(home, embs.int8)
    vecs = embs.int8.encode(texts, batch_size=16)
    results["lexical only (BM25)"] = rank_queries(bundle, embs.int8, texts, mode="lexical")
    results["reciprocal-rank fusion"] = rank_queries(bundle, embs.int8, texts, mode="rrf", vectors=vecs)
    results["default: convex fusion"] = rank_queries(
        bundle,
        embs.int8,
        texts,
        mode=settings.fusion,
        alpha=defaults.fusion_alpha,
        title_weight=settings.title_weight,
        candidates=settings.candidates,
        vectors=vecs,
    )
    metrics = {k: retrieval_metrics(v.ids, rel) for k, v in results.items()}
    base = metrics["dense, PyTorch"]
    for system, m in metrics.items():
        for key in ("recall@1", "recall@3", "mrr@10"):
            target = ""
            if system.startswith("default"):
                target = f"{'>= 0.96, ' if key == 'recall@1' and name == 'StackFAQ' else ''}not below dense"
            row(name, system, key, m[key], f"dense PyTorch {base[key]:.3f}", target)
    d8, dt = metrics["dense, ONNX int8"]["recall@3"], base["recall@3"]
    notes.append(
        f"{name}: ONNX int8 Recall@3 {d8:.3f} vs PyTorch {dt:.3f} (difference {abs(d8 - dt) * 100:.1f} "
        f"points; int8 is kept when within 1 point)"
    )
    if any(not q.answerable for q in queries):
        r = results["default: convex fusion"]
        a = abstention(r.top_scores, rel, defaults.min_score)
        row(name, "default, abstention", "precision", a.precision, f"threshold {defaults.min_score}")
        row(name, "default, abstention", "recall", a.recall, "of queries no article answers")
        row(name, "default, abstention", "answerable abst.", a.answerable_abstained, "share of answerable abstained")
        pts = precision_coverage([i[0] if i else None for i in r.ids], r.top_scores, rel, [defaults.min_score])
        row(name, "default, shown", "precision@1", pts[0].precision, f"coverage {pts[0].coverage:.3f}")


def generate_kb(out: Path, n: int, seed: int = 0) -> list[Path]:
    """A synthetic help center of ``n`` articles (3 sections of ~140 words, one chunk each), from demo sentences."""
    rng = random.Random(seed)
    sentences = []
    for f in sorted(DEMO_KB.rglob("*.md")):
        body = f.read_text().split("---", 2)[-1]
        sentences += [
            s.strip() for s in re.split(r"(?<=[.!?])\s+", re.sub(r"[#|*`>-]+", " ", body)) if len(s.split()) > 5
        ]
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        parts = [
            f"---\nid: gen-{i:05d}\ntitle: {json.dumps(f'Generated article {i}: {rng.choice(sentences)[:60]}')}\n---\n"
        ]
        for s in range(3):
            words: list[str] = []
            while len(words) < 140:
                words += rng.choice(sentences).split()
            parts.append(f"## Section {s + 1}\n\n{' '.join(words)}\n")
        p = out / f"gen-{i:05d}.md"
        p.write_text("\n".join(parts))
        files.append(p)
    return files


def bench_ingest(embs: Embedders, work: Path, settings: Settings, n_articles: int, baseline_sample: int) -> None:
    kb = work / "gen-kb"
    files = generate_kb(kb, n_articles)
    home = work / "gen-home"
    t0 = time.perf_counter()
    s = ingest(kb, home, embs.ingest, chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap)
    full = time.perf_counter() - t0
    bundle = load_current(home, embs.int8)
    tokens = np.mean(
        [len(embs.int8.token_spans(c.embed_text(bundle.articles[c.article_id].title))) for c in bundle.chunks[:500]]
    )
    rate = s.chunks / full
    rng = random.Random(1)
    sample = rng.sample(range(len(bundle.chunks)), min(baseline_sample, len(bundle.chunks)))
    texts = [bundle.chunks[i].embed_text(bundle.articles[bundle.chunks[i].article_id].title) for i in sample]
    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # the baseline gets every core, as sentence-transformers does
    embs.torch.encode(texts[:8], role="passage")
    t0 = time.perf_counter()
    embs.torch.encode(texts, batch_size=32, role="passage")
    base_rate = len(texts) / (time.perf_counter() - t0)
    row(
        "ingest",
        f"full ingest, {n_articles} articles",
        "chunks/s",
        rate,
        f"ST encode {base_rate:.1f} chunks/s ({rate / base_rate:.2f}x)",
        ">= 2.5x",
    )
    notes.append(
        f"ingest: {s.chunks} chunks of ~{tokens:.0f} model tokens in {full:.1f}s end to end (parse, chunk, "
        f"embed, BM25, FAISS, write); the baseline is sentence-transformers' encode (PyTorch, batch 32) "
        f"on {len(texts)} of the same chunks"
    )
    for p in rng.sample(files, max(1, n_articles // 100)):
        p.write_text(p.read_text() + "\n\nAn extra paragraph added by the benchmark.\n")
    t0 = time.perf_counter()
    s2 = ingest(kb, home, embs.ingest, chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap)
    again = time.perf_counter() - t0
    row(
        "ingest",
        "re-ingest after 1% changed",
        "seconds",
        again,
        f"full ingest {full:.1f}s ({full / again:.1f}x faster)",
        ">= 20x",
    )
    assert len(s2.updated) == max(1, n_articles // 100), s2.as_dict()

    # ANN recall against exact search, on these chunk vectors
    demo_q = [q.text for q in load_queries(DEMO_QUERIES)]
    qv = embs.int8.encode(demo_q, batch_size=16)
    exact = FaissIndex(bundle.vectors.shape[1], "flat")
    exact.add(bundle.vectors)
    ann = FaissIndex(bundle.vectors.shape[1], "hnsw")
    ann.add(bundle.vectors)
    _, e_ids = exact.search(qv, 50)
    t0 = time.perf_counter()
    for i in range(len(qv)):
        ann.search(qv[i : i + 1], 50)
    ann_ms = (time.perf_counter() - t0) / len(qv) * 1000
    t0 = time.perf_counter()
    for i in range(len(qv)):
        exact.search(qv[i : i + 1], 50)
    exact_ms = (time.perf_counter() - t0) / len(qv) * 1000
    _, a_ids = ann.search(qv, 50)
    rec = np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(a_ids, e_ids, strict=True)])
    row(
        "ann",
        f"HNSW over {len(bundle.vectors)} chunks",
        "recall@50",
        float(rec),
        f"exact flat; search {ann_ms:.2f} ms vs {exact_ms:.2f} ms",
    )


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            body = json.dumps({"subject": "warm up", "description": "warm up"}).encode()
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/suggest", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server on port {port} not ready after {timeout}s")


def _load(port: int, bodies: Path, concurrency: int, seconds: float, path: str = "/v1/suggest") -> dict:
    """``concurrency`` keep-alive connections POSTing ``bodies`` in turn for ``seconds``:
    ``{rps, p50_ms, p99_ms, errors}``. With Debian's ``wrk`` (one thread, little CPU) when
    it is installed, else bench/loadgen.py (asyncio, heavier on the shared cores)."""
    if shutil.which("wrk"):
        cmd = [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds:g}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "wrk_post.lua"),
        ]
        cmd += [f"http://127.0.0.1:{port}{path}", "--", str(bodies)]
    else:
        cmd = [sys.executable, str(ROOT / "bench" / "loadgen.py"), "--port", str(port), "--bodies", str(bodies)]
        cmd += ["--concurrency", str(concurrency), "--seconds", str(seconds), "--path", path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def recording_cost(serve: list[str], base_env: dict, env: dict, bodies: Path, seconds: float, rounds: int = 3) -> None:
    """Suggest throughput with recording on and off: both servers up at once, loaded in turn
    (on, off, on, off, ...), so drift on the machine hits both alike; medians of ``rounds``."""
    procs = {}
    try:
        for name, port, extra in (("on", 8768, {}), ("off", 8769, {"DEFLECT_RECORD_SUGGESTIONS": "false"})):
            procs[name] = (
                subprocess.Popen(
                    serve + [str(port)],
                    env={**base_env, **env, **extra},
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                ),
                port,
            )
        for proc, port in procs.values():
            _wait_ready(port, proc)
        for c in (1, 8, 32):
            got: dict[str, list[dict]] = {"on": [], "off": []}
            for _ in range(rounds):
                for name in ("on", "off"):
                    got[name].append(_load(procs[name][1], bodies, c, seconds))
            on = float(np.median([r["rps"] for r in got["on"]]))
            off = float(np.median([r["rps"] for r in got["off"]]))
            p99_on = float(np.median([r["p99_ms"] for r in got["on"]]))
            p99_off = float(np.median([r["p99_ms"] for r in got["off"]]))
            row(
                "http",
                f"recording cost, {c} clients",
                "throughput loss",
                1 - on / off,
                f"median of {rounds} alternating runs: on {on:.1f} req/s / off {off:.1f}; p99 {p99_on:.1f} / "
                f"{p99_off:.1f} ms",
                "< 0.10" if c == 8 else "",
            )
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(timeout=30)


def bench_http(work: Path, embs: Embedders, seconds: float) -> None:
    """Real HTTP on loopback: deflect with the index only (the suggest path of issue 2), deflect
    as `make run` serves it (index + intent model), and the naive baseline."""
    from deflect.models.labeled import load_labeled_texts
    from deflect.models.training import TrainOptions, train

    plain = work / "http-home"
    ingest(DEMO_KB, plain, embs.ingest)
    shutil.copytree(embs.int8.onnx_path.parent, plain / "onnx" / embs.int8.onnx_path.parent.name)
    full = work / "http-home-intent"
    shutil.copytree(plain, full)
    train(
        load_labeled_texts(ROOT / "examples" / "intents.csv"),
        full,
        embs.int8,
        TrainOptions(oos_label="out_of_scope", promote=True),
    )
    bodies = work / "bodies.jsonl"
    with open(bodies, "w") as f:
        for i, q in enumerate(load_queries(DEMO_QUERIES)):
            f.write(json.dumps({"subject": q.subject, "description": q.description, "session_id": f"s{i}"}) + "\n")
    # /v1/events: batches of 10 events with unique ids (a repeated id would only be a duplicate)
    event_bodies = work / "events.jsonl"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with open(event_bodies, "w") as f:
        for i in range(60_000):
            batch = [
                {"event_id": f"b{i}-{j}", "session_id": f"s{i}", "type": "form_abandoned", "ts": now} for j in range(10)
            ]
            f.write(json.dumps({"events": batch}) + "\n")
    # throughput is measured without the per-address rate limits (one address sends it all)
    limits_off = {f"DEFLECT_RATE_LIMIT_{k}": "" for k in ("SUGGEST", "SUGGEST_SESSION", "EVENTS", "EVENTS_SESSION")}
    base_env = {**os.environ, "HF_HUB_OFFLINE": "1", **limits_off}
    intent_env = {
        "DEFLECT_NEVER_DEFLECT": "account_compromised,billing_dispute",
        "DEFLECT_INTENT_ARTICLES": str(ROOT / "examples" / "intent_articles.json"),
    }
    serve = [sys.executable, "-m", "deflect.cli.main", "serve", "--port"]
    servers = {
        "deflect, index only": (serve + ["8765"], {"DEFLECT_HOME": str(plain)}, 8765),
        "deflect + intent model": (serve + ["8767"], {"DEFLECT_HOME": str(full), **intent_env}, 8767),
        "naive": (
            [sys.executable, str(ROOT / "bench" / "naive_server.py"), "8766"],
            {"DEFLECT_HOME": str(plain)},
            8766,
        ),
    }
    results: dict[str, dict[int, dict]] = {}
    for name, (cmd, env, port) in servers.items():
        proc = subprocess.Popen(
            cmd, env={**base_env, **env}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _wait_ready(port, proc)
            results[name] = {c: _load(port, bodies, c, seconds) for c in (1, 8, 32)}
            if name == "deflect + intent model":
                events_rps = _load(port, event_bodies, 8, seconds, path="/v1/events")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    naive = results.pop("naive")
    recording_cost(serve, base_env, {"DEFLECT_HOME": str(full), **intent_env}, bodies, seconds)
    row(
        "http",
        "POST /v1/events, 8 clients",
        "events/s",
        events_rps["rps"] * 10,
        f"{events_rps['rps']:.1f} batches of 10/s, each committed before its response; "
        f"p99 {events_rps['p99_ms']:.1f} ms",
        "",
    )
    for name, ours in results.items():
        for c in (1, 8, 32):
            o, n = ours[c], naive[c]
            row(
                "http",
                f"{name}, {c} clients",
                "req/s",
                o["rps"],
                f"naive {n['rps']:.1f} ({o['rps'] / n['rps']:.1f}x)",
                ">= 300, >= 3x naive" if c == 8 else "",
            )
            row("http", f"{name}, {c} clients", "p50 ms", o["p50_ms"], f"naive {n['p50_ms']:.1f}")
            row(
                "http",
                f"{name}, {c} clients",
                "p99 ms",
                o["p99_ms"],
                f"naive {n['p99_ms']:.1f}",
                "<= 30" if c == 8 else "",
            )
            if o["errors"] or n["errors"]:
                notes.append(f"http: errors at {c} clients: {name} {o['errors']}, naive {n['errors']}")
    gen = "wrk -t1 with bench/wrk_post.lua" if shutil.which("wrk") else "bench/loadgen.py, asyncio"
    notes.append(
        f"http: the load generator ({gen}, keep-alive) runs on the same 2 cores as the "
        f"servers; {seconds:.0f}s per level after 2s of warm-up; bodies cycle through the 348 demo queries; "
        "naive = FastAPI + PyTorch encoder + numpy dot over all chunk vectors"
    )


def bench_widget() -> None:
    """The widget's size as served, minified (rjsmin) and gzipped (level 9)."""
    import gzip

    import rjsmin

    src = (ROOT / "deflect" / "static" / "deflect-widget.js").read_bytes()
    mini = rjsmin.jsmin(src.decode()).encode()
    gz = gzip.compress(mini, compresslevel=9)
    row("widget", "deflect-widget.js", "bytes", len(src), "as served, with comments", "")
    row("widget", "deflect-widget.js", "minified", len(mini), "rjsmin", "")
    row("widget", "deflect-widget.js", "min+gzip", len(gz), f"as served, gzipped: {len(gzip.compress(src, 9))}", "")


def markdown_table() -> str:
    out = ["| section | system | metric | value | baseline (same run) | target |", "|---|---|---|---|---|---|"]
    for r in rows:
        v = f"{r['value']:.3f}" if isinstance(r["value"], float) else r["value"]
        out.append(f"| {r['section']} | {r['system']} | {r['metric']} | {v} | {r['baseline']} | {r['target']} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", default=",".join(sorted(ALL)))
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per HTTP load level")
    ap.add_argument("--articles", type=int, default=2000, help="generated articles for the ingest benchmark")
    ap.add_argument("--baseline-sample", type=int, default=600, help="chunks encoded by the PyTorch baseline")
    ap.add_argument("--report-sizes", default="20000,200000,2000000", help="simulated sessions per report store")
    ap.add_argument("--no-readme", action="store_true")
    a = ap.parse_args()
    only = set(a.only.split(","))
    settings = Settings()
    work = Path(tempfile.mkdtemp(prefix="deflect-bench-"))
    started = datetime.now(UTC)
    print(f"deflect benchmark, {started:%Y-%m-%d %H:%M} UTC, {machine()}\n", flush=True)
    try:
        embs = Embedders(work / "onnx")
        if "stackfaq" in only:
            if (msg := missing("stackfaq")) is not None:
                print(f"  SKIPPED StackFAQ: {msg}")
                notes.append(f"StackFAQ skipped: {msg}")
            else:
                kb = work / "stackfaq.jsonl"
                quality("StackFAQ", kb, stackfaq(kb), embs, work, settings)
        if "demo" in only:
            quality("demo", DEMO_KB, load_queries(DEMO_QUERIES), embs, work, settings)
        if "widget" in only:
            bench_widget()
        if only & {"multilingual", "xsid", "http-e5", "calibrate", "ingest-e5", "banking77-e5", "e5-int8"}:
            from bench import multilingual as ML
            from deflect.models.embedders.e5_rebuild import ensure_rebuilt

            e5_dir = ensure_rebuilt(work / "encoders")
            e5 = OnnxEmbedder(e5_dir, work / "onnx", quantize="int8", threads=1, parallel=os.cpu_count() or 1)
            encoders = {"MiniLM": embs.int8, "e5": e5}
            if "multilingual" in only:
                notes.extend(ML.bench_retrieval(encoders, work, settings, row))
            if "ingest-e5" in only:
                notes.extend(ML.bench_ingest_e5(e5, work, settings, row))
            if "e5-int8" in only:
                notes.extend(ML.bench_e5_int8(e5_dir, work, settings, row))
            if "banking77-e5" in only:
                if (msg := missing("banking77")) is not None:
                    notes.append(f"BANKING77 with e5 skipped: {msg}")
                else:
                    from bench import intent_bench

                    intent_bench.run_other_encoder(e5, "e5", work / "b77-e5-home", row, notes)
            if "calibrate" in only:
                notes.extend(ML.calibration(encoders, work, settings, row))
            if "xsid" in only:
                notes.extend(ML.bench_intents(encoders, work, row))
            if "http-e5" in only:
                notes.extend(ML.bench_http_e5(embs.int8, e5, work, a.seconds, row, _wait_ready, _load))
        if "redaction" in only:
            from bench import redaction

            notes.extend(redaction.run(row))
        if "mail" in only:
            from bench import mail_bench

            notes.extend(mail_bench.run(work, row))
        if "report" in only:
            from bench import report_scale

            sizes = tuple(int(x) for x in a.report_sizes.split(","))
            notes.extend(report_scale.run(work, embs.int8, row, sizes))
        if "http" in only:
            bench_http(work, embs, a.seconds)
        if "ingest" in only:
            bench_ingest(embs, work, settings, a.articles, a.baseline_sample)
        if "banking77" in only:
            if (msg := missing("banking77")) is not None:
                print(f"  SKIPPED BANKING77: {msg}")
                notes.append(f"BANKING77 skipped: {msg}")
            else:
                from bench import intent_bench

                intent_bench.run(embs.int8, work / "b77-home", row, notes)
        if "demo" in only:
            from bench import intent_bench

            intent_bench.demo_effects(embs.ingest, embs.int8, work, row, notes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    md = (
        f"Measured {started:%Y-%m-%d} on {machine()} by `make bench` ({minutes:.0f} min).\n\n"
        + markdown_table()
        + "\n\n"
        + "\n".join(f"- {n}" for n in notes)
        + "\n"
    )
    print("\n" + md)
    RESULTS.mkdir(exist_ok=True)
    ran = {r["section"] for r in rows}
    if only != ALL and (RESULTS / "latest.json").exists():
        # a partial run replaces its own sections and keeps the others from the last run
        old = json.loads((RESULTS / "latest.json").read_text())
        kept = [r for r in old["rows"] if r["section"] not in ran]
        rows[:0] = kept
        notes[:0] = [n for n in old.get("notes", []) if not any(n.lower().startswith(x.lower()) for x in ran)]
        notes[:] = list(dict.fromkeys(notes))  # notes every run adds (the encoders) once
        md = (
            f"Measured {started:%Y-%m-%d} on {machine()} by `make bench` (sections {', '.join(sorted(ran))} "
            f"re-run; the rest from {old['date'][:10]}).\n\n"
            + markdown_table()
            + "\n\n"
            + "\n".join(f"- {n}" for n in notes)
            + "\n"
        )
    (RESULTS / "latest.json").write_text(
        json.dumps({"date": started.isoformat(), "machine": machine(), "rows": rows, "notes": notes}, indent=2)
    )
    (RESULTS / "latest.md").write_text(md)
    readme = ROOT / "docs" / "benchmarks.md"
    if not a.no_readme and readme.exists():
        text = readme.read_text()
        start, end = "<!-- bench:start -->", "<!-- bench:end -->"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            readme.write_text(head + start + "\n" + md + end + rest.split(end, 1)[1])
            print("docs/benchmarks.md results updated")


if __name__ == "__main__":
    main()
