"""`make bench` section ``report``: the deflection report at a large team's scale.

Builds stores of 20,000, 200,000 and 2,000,000 simulated sessions (``deflect simulate``'s
generator, the real engine on the demo, a fixed end date) in SQLite and in PostgreSQL, then
times the report on each twice, in a fresh process each time: computed in the store
(``measure_in_store``, what ``deflect report`` does) and by today's in-memory computation
(``measure`` over every row read into Python, ``deflect report --in-memory``), in the same
run. Prints time and peak resident memory of each process, the speed-up, the per-session
cost ratio (largest store over smallest, and 2,000,000 over 200,000), and checks that both
computations give the same figures.

PostgreSQL: ``DEFLECT_BENCH_DATABASE_URL`` (else ``DEFLECT_TEST_DATABASE_URL``) names a
database where the benchmark may create and drop its own schemas; without one the
PostgreSQL half is skipped and says so.

    python -m bench.report_scale --measure sql|memory URL NOW     (one timed computation)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = (20_000, 200_000, 2_000_000)
END = datetime(2026, 11, 30, tzinfo=UTC)  # simulated sessions end here; the report runs days later
NOW = END + timedelta(days=3)
TARGET_RSS_MB = 1024
TARGET_SPEEDUP = 3.0
TARGET_PER_SESSION = 1.5


def measure_once(kind: str, url: str, now: str) -> dict:
    """One computation of the report (in this process), its time and peak RSS (``VmHWM``:
    unlike ``ru_maxrss``, it starts afresh at ``exec``, not at the parent's size), worker
    processes included."""
    from deflect.eval.deflection import measure
    from deflect.eval.deflection_sql import measure_in_store
    from deflect.store import open_store

    at = datetime.fromisoformat(now)
    store = open_store(url)
    t = time.perf_counter()
    try:
        if kind == "sql":
            m = measure_in_store(store, now=at, include_simulated=True)
        else:
            m = measure(store.suggestions(), store.events(), now=at, rejected=store.rejected())
    finally:
        store.close()
    seconds = time.perf_counter() - t
    inc = m.incremental
    return {
        "seconds": seconds,
        "rss_mb": _peak_rss_mb(),
        "figures": [
            m.sessions,
            m.sessions_shown_closed,
            m.observed_deflected_sessions,
            inc.treatment_sessions,
            inc.control_sessions,
            inc.treatment_submitted,
            inc.control_submitted,
        ],  # fmt: skip
    }


def _peak_rss_mb() -> float:
    """This process's peak RSS plus twice the largest of its finished worker processes' (the
    SQLite report runs at most two at once): an upper bound of what the computation held."""
    import resource

    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KB on Linux
    return (kb + 2 * workers) / 1024


def _child(kind: str, url: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.report_scale", "--measure", kind, url, NOW.isoformat()],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pg_admin_url() -> str:
    return os.environ.get("DEFLECT_BENCH_DATABASE_URL") or os.environ.get("DEFLECT_TEST_DATABASE_URL") or ""


def _pg_schema(admin: str, name: str, *, drop: bool = False) -> str:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        if not drop:
            conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in admin else "?"
    return f"{admin}{sep}options=-csearch_path%3D{name}"


def _settle(url: str) -> None:
    """VACUUM ANALYZE the freshly loaded tables, as autovacuum would have long before anyone
    asks a live store for a report: otherwise autovacuum starts on the millions of rows just
    loaded while the first computation (the one in the store) is being timed, on the same cores."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("suggestions", "events", "rejected_events", "mail_messages"):
            conn.execute(f"VACUUM (ANALYZE) {table}")


def run(work: Path, embedder, row, sizes=SIZES) -> list[str]:
    """The ``report`` section: one row per backend, size and figure; returns notes."""
    from deflect.config import Settings
    from deflect.engine import Engine
    from deflect.eval.queries import load_queries
    from deflect.eval.simulate import simulate
    from deflect.kb_ingest.pipeline import ingest
    from deflect.store import open_store

    notes: list[str] = []
    home = work / "report-home"
    ingest(ROOT / "examples" / "helpcenter", home, embedder)
    settings = Settings(home=home)
    engine = Engine(settings, embedder)
    queries = load_queries(ROOT / "examples" / "demo_queries.csv")
    admin = _pg_admin_url()
    backends = ["SQLite"] + (["PostgreSQL"] if admin else [])
    if not admin:
        notes.append("report on PostgreSQL skipped: set DEFLECT_BENCH_DATABASE_URL (or DEFLECT_TEST_DATABASE_URL)")
        print("  SKIPPED report on PostgreSQL: no DEFLECT_BENCH_DATABASE_URL", flush=True)
    for backend in backends:
        per_session: dict[int, float] = {}
        for n in sizes:
            schema = f"bench_report_{uuid.uuid4().hex[:8]}"
            url = f"sqlite:///{work / f'report-{n}.db'}" if backend == "SQLite" else _pg_schema(admin, schema)
            store = open_store(url)
            t = time.perf_counter()
            try:
                simulate(store, engine.suggest, queries, sessions=n, true_effect=0.15, seed=1, end=END, days=90)
            finally:
                store.close()
            built = time.perf_counter() - t
            if backend == "PostgreSQL":
                _settle(url)
            try:
                sql = _child("sql", url)
                mem = _child("memory", url)
            finally:
                if backend == "SQLite":
                    (work / f"report-{n}.db").unlink(missing_ok=True)
                else:
                    _pg_schema(admin, schema, drop=True)
            speedup = mem["seconds"] / sql["seconds"]
            per_session[n] = sql["seconds"] / n
            big = n == max(sizes)
            label = f"{backend}, in the store"
            row(
                "report",
                label,
                f"s @{n:,}",
                sql["seconds"],
                f"in-memory {mem['seconds']:.1f} s ({speedup:.1f}x faster); store built in {built:.0f} s",
                f">= {TARGET_SPEEDUP:g}x faster" if big else "",
            )
            row(
                "report",
                label,
                f"peak MB @{n:,}",
                sql["rss_mb"],
                f"in-memory {mem['rss_mb']:.0f} MB",
                f"<= {TARGET_RSS_MB} MB" if big else "",
            )
            if sql["figures"] != mem["figures"]:
                notes.append(
                    f"report {backend} @{n:,}: the two computations DIFFER: {sql['figures']} vs {mem['figures']}"
                )
        lo, hi = min(per_session), max(per_session)
        row(
            "report", f"{backend}, in the store", "cost/session", per_session[hi] / per_session[lo], f"{hi:,} vs {lo:,}"
        )
        if len(per_session) < 3:
            continue
        mid = sorted(per_session)[-2]
        row(
            "report",
            f"{backend}, in the store",
            "cost/session",
            per_session[hi] / per_session[mid],
            f"{hi:,} vs {mid:,}",
            f"<= {TARGET_PER_SESSION:g}",
        )
    notes.append(
        "report: simulated sessions over 90 days (about 3.1 rows each: suggest records and events), "
        "each computation in a fresh process, peak RSS of that process and its report workers "
        "(Python and its libraries included); PostgreSQL's tables vacuumed and analyzed after loading"
    )
    return notes


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        print(json.dumps(measure_once(sys.argv[2], sys.argv[3], sys.argv[4])))
    else:
        sys.exit(__doc__)
