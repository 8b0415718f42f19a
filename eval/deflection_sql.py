"""The deflection report computed where the data lives: SQL in the event store.

:func:`measure_in_store` gives the same :class:`~deflect.eval.deflection.DeflectionMeasurement`
as :func:`~deflect.eval.deflection.measure` (the definitions are that module's docstring; a
test runs both on the same stores, SQLite and PostgreSQL, and asserts equal results), but the
store does the work: one pass builds a temporary table with one row per session, the figures
are aggregates over it, and only those aggregates leave the database. Memory in Python does
not grow with the number of sessions. The one list that would, the content-gap queries, is
an even sample of at most ``max_gap_queries`` (the counts beside it are exact).

The same SQL runs on both stores; :class:`Dialect` holds the few expressions that differ
(time arithmetic, truncation, JSON arrays, text order). Times are compared as stored: ISO
8601 text of fixed width in SQLite (so text order is time order, and adding a window is
exact to the microsecond), ``timestamptz`` in PostgreSQL.

Why SQL in the store and not DuckDB: DuckDB reads SQLite and PostgreSQL through extensions
it downloads on first use, which this project may not do at run time; and the report then
needs no second engine beside the database a team already runs.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from deflect.core.errors import InvalidInputError, StoreError
from deflect.eval.deflection import (
    AFTER_SUGGEST,
    FLAG_REASONS,
    Abstention,
    ArticleFigures,
    BotRules,
    Breakdown,
    DeflectionMeasurement,
    GapQuery,
    Incremental,
    Integrity,
    Period,
    experiment_by_channel,
    pool_channels,
)
from deflect.store.base import SUBMIT_TYPES, parse_iso, to_utc

AFTER = "(" + ", ".join(f"'{t}'" for t in AFTER_SUGGEST) + ")"
SUBMIT = "(" + ", ".join(f"'{t}'" for t in SUBMIT_TYPES) + ")"


@dataclass(frozen=True)
class Dialect:
    """The expressions that differ between SQLite and PostgreSQL."""

    name: str

    @property
    def sqlite(self) -> bool:
        return self.name == "sqlite"

    def plus(self, col: str, seconds: int) -> str:
        """``col`` moved by a whole number of seconds (NULL stays NULL)."""
        if self.sqlite:
            return f"(strftime('%Y-%m-%dT%H:%M:%S', substr({col}, 1, 19), '{seconds:+d} seconds') || substr({col}, 20))"
        return f"({col} + interval '{seconds} seconds')"

    def second(self, col: str) -> str:
        return f"substr({col}, 1, 19)" if self.sqlite else f"date_trunc('second', {col})"

    def hour(self, col: str) -> str:
        return f"substr({col}, 1, 13)" if self.sqlite else f"to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')"

    def day(self, col: str) -> str:
        return f"substr({col}, 1, 10)" if self.sqlite else f"to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def nonempty(self, col: str) -> str:
        return f"{col} <> '[]'" if self.sqlite else f"jsonb_array_length({col}) > 0"

    def elements(self, col: str) -> str:
        """A FROM item with one row per element of a JSON array of strings, as ``j.value``."""
        return f"json_each({col}) AS j" if self.sqlite else f"jsonb_array_elements_text({col}) AS j(value)"

    @property
    def text_order(self) -> str:
        """Text compared byte by byte, as Python compares strings."""
        return "" if self.sqlite else ' COLLATE "C"'

    def time(self, v) -> datetime | None:
        if v is None:
            return None
        return parse_iso(v) if isinstance(v, str) else to_utc(v)


def first_last(d: Dialect, eligible: str, p: dict) -> list[tuple[str, dict]]:
    """Steps that make ``rpt_s``: per session, its suggest calls' count, first time, first
    eligible time, and the first call's variant and caller and the last call's intent,
    abstention, reason and query (order: time, then request id)."""
    if d.sqlite:
        # one pass groups the calls; the first and the last call of each session are found by
        # the key (time, request id) that the pass keeps, through the request id's index
        # (created_at is fixed-width text, so the key orders as the pair does)
        key = "created_at || char(1) || request_id"
        return [
            (
                f"""CREATE TEMP TABLE rpt_a AS SELECT session_id, COUNT(*) AS n_sug, MIN(created_at) AS first_sug,
                   MIN(CASE WHEN {eligible} THEN created_at END) AS eligible_at, MIN({key}) AS kf, MAX({key}) AS kl
                   FROM rpt_sug WHERE session_id IS NOT NULL GROUP BY session_id""",
                p,
            ),
            (
                """CREATE TEMP TABLE rpt_s AS SELECT a.session_id, a.n_sug, a.first_sug, a.eligible_at,
                   f.variant, f.client, f.channel, l.intent_label AS last_intent,
                   CASE WHEN l.abstained = :yes THEN 1 ELSE 0 END AS last_abstained, l.reason AS last_reason,
                   l.query AS last_query
                   FROM rpt_a a JOIN rpt_sug f ON f.request_id = substr(a.kf, instr(a.kf, char(1)) + 1)
                   JOIN rpt_sug l ON l.request_id = substr(a.kl, instr(a.kl, char(1)) + 1)""",
                p,
            ),
            ("CREATE INDEX rpt_s_sid ON rpt_s (session_id)", {}),
        ]
    C = d.text_order
    agg = f"""SELECT session_id, COUNT(*) AS n_sug, MIN(created_at) AS first_sug,
               MIN(CASE WHEN {eligible} THEN created_at END) AS eligible_at FROM rpt_sug
               WHERE session_id IS NOT NULL GROUP BY session_id"""
    last_cols = """intent_label AS last_intent, CASE WHEN abstained = :yes THEN 1 ELSE 0 END AS last_abstained,
              reason AS last_reason, query AS last_query"""
    return [
        (f"CREATE TEMP TABLE rpt_a AS {agg}", p),
        (
            f"""CREATE TEMP TABLE rpt_f AS SELECT DISTINCT ON (session_id) session_id, variant, client, channel
               FROM rpt_sug WHERE session_id IS NOT NULL ORDER BY session_id, created_at, request_id{C}""",
            {},
        ),
        (
            f"""CREATE TEMP TABLE rpt_l AS SELECT DISTINCT ON (session_id) session_id,
               {last_cols} FROM rpt_sug WHERE session_id IS NOT NULL
               ORDER BY session_id, created_at DESC, request_id{C} DESC""",
            p,
        ),
        (
            """CREATE TEMP TABLE rpt_s AS SELECT a.*, f.variant, f.client, f.channel, l.last_intent, l.last_abstained,
               l.last_reason, l.last_query
               FROM rpt_a a JOIN rpt_f f ON f.session_id = a.session_id
               JOIN rpt_l l ON l.session_id = a.session_id""",
            {},
        ),
    ]


def _place(d: Dialect, steps: list[tuple[str, dict]], db: str) -> list[tuple[str, dict]]:
    """SQLite: the steps with their tables and indexes made in the scratch database ``db``
    (``SQLiteStore.query_stages``); PostgreSQL: unchanged (temporary tables)."""
    if not d.sqlite:
        return steps
    out = []
    for sql, params in steps:
        if sql.startswith("CREATE TEMP TABLE "):
            sql = f"CREATE TABLE {db}." + sql.removeprefix("CREATE TEMP TABLE ")
        elif sql.startswith("CREATE INDEX "):
            sql = f"CREATE INDEX {db}." + sql.removeprefix("CREATE INDEX ")
        out.append((sql, params))
    return out


def _on_postgres(store, steps: list[tuple[str, dict]]) -> list[list[tuple]]:
    """Every step's rows, run by PostgreSQL in one transaction that is rolled back at the end.

    The per-session tables are unlogged tables in a schema of their own, made in that
    transaction (so rolling it back, or a crash, leaves nothing behind): unlike temporary
    tables they are not confined to ``temp_buffers`` and PostgreSQL may scan them with
    parallel workers (measured at 2,000,000 sessions: 55 s against 74 s). A role that may not
    create a schema gets temporary tables instead. Indexes, which SQLite needs, only cost
    time here (PostgreSQL joins by hashing; their results are empty); each table is analysed
    once made (without statistics the planner chooses badly)."""
    schema = f"deflect_report_{uuid.uuid4().hex[:12]}"
    try:
        return _run_postgres(store, steps, schema)
    except StoreError as exc:
        if "permission denied" not in str(exc):
            raise
        return _run_postgres(store, steps, None)


def _run_postgres(store, steps: list[tuple[str, dict]], schema: str | None) -> list[list[tuple]]:
    run: list[tuple[str, dict]] = [("SET LOCAL work_mem = '64MB'", {})]
    if schema is not None:
        run += [
            (f"CREATE SCHEMA {schema}", {}),
            (f"SELECT set_config('search_path', '{schema}, ' || current_setting('search_path'), true)", {}),
            ("SET LOCAL parallel_setup_cost = 100", {}),
            ("SET LOCAL min_parallel_table_scan_size = '1MB'", {}),
        ]
    at: list[int | None] = []
    for sql, params in steps:
        if sql.startswith("CREATE INDEX"):
            at.append(None)
            continue
        if schema is not None:
            sql = sql.replace("CREATE TEMP TABLE ", "CREATE UNLOGGED TABLE ", 1)
        at.append(len(run))
        run.append((sql, params))
        if sql.startswith(("CREATE TEMP TABLE", "CREATE UNLOGGED TABLE")):
            run.append((f"ANALYZE {sql.split()[3]}", {}))
    rows = store.query_all(run)
    return [[] if i is None else rows[i] for i in at]


def _least(a: str, b: str) -> str:
    return f"CASE WHEN {a} IS NULL THEN {b} WHEN {b} IS NULL THEN {a} WHEN {a} < {b} THEN {a} ELSE {b} END"


def measure_in_store(
    store,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    window: timedelta = timedelta(hours=24),
    now: datetime | None = None,
    rules: BotRules | None = None,
    include_simulated: bool = False,
    max_gap_queries: int = 5000,
) -> DeflectionMeasurement:
    """Every figure of the deflection report, computed by ``store`` in SQL, over the rows that
    ``deflect report`` reads: suggestion records from ``since`` to ``until`` + window, events
    from ``since`` − window to ``until`` + window, rejected events received from ``since`` to
    ``until`` + window; simulated rows only with ``include_simulated``."""
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")
    w = window.total_seconds()
    if w != int(w):
        raise InvalidInputError("--window must be a whole number of seconds", field="window")
    w = int(w)
    rules = rules or BotRules()
    skew = int(rules.clock_skew.total_seconds())
    d = Dialect(store.dialect)
    C = d.text_order
    now = to_utc(now) if now is not None else datetime.now(UTC)
    since = to_utc(since) if since is not None else None
    until = to_utc(until) if until is not None else None
    as_of = min(now, until + window) if until is not None else now
    hi = until + window if until is not None else None
    p: dict = {
        "yes": True,
        "no": False,
        "as_of": as_of,
        "since": since,
        "until": until,
        "hi": hi,
        "lo_e": since - window if since is not None else None,
        "max_sug": rules.max_suggest_calls,
        "burst": rules.burst_events,
        "busy": rules.busy_client_sessions,
    }
    sim = "" if include_simulated else " AND simulated = :no"

    def rng(col: str, lo: str, up: str = "hi") -> str:
        """`` AND col >= :lo AND col < :up``, each bound only when it is set."""
        parts = [f"{col} >= :{lo}"] if p[lo] is not None else []
        parts += [f"{col} < :{up}"] if p[up] is not None else []
        return "".join(f" AND {x}" for x in parts)

    sug_where = f"WHERE 1 = 1{rng('created_at', 'since')}{sim}"
    ev_where = f"WHERE 1 = 1{rng('ts', 'lo_e')}{sim}"
    eligible = f"({d.nonempty('would_show')} AND abstained = :no)"
    period = rng("start", "since", "until")
    # stage 1 reads the store, in one transaction: the rows of the report, and the rejected events
    copy: list[tuple[str, dict]] = [
        (f"CREATE TEMP TABLE rpt_sug AS SELECT * FROM suggestions {sug_where}", p),
        (f"CREATE TEMP TABLE rpt_ev AS SELECT * FROM events {ev_where}", p),
        (
            f"SELECT reason, COUNT(*) FROM rejected_events WHERE 1 = 1{rng('received_at', 'since')} GROUP BY reason",
            p,
        ),
    ]
    # stage 2, side by side: per session, from the suggest calls (0) and from the events (1)
    from_calls = [("CREATE INDEX rpt_sug_rid ON rpt_sug (request_id)", {}), *first_last(d, eligible, p)]
    from_calls += [
        (
            f"""CREATE TEMP TABLE rpt_busy AS
            SELECT s.session_id FROM rpt_s s
            JOIN (SELECT client, {d.hour("first_sug")} AS h FROM rpt_s
                  WHERE client IS NOT NULL AND client <> '' GROUP BY client, {d.hour("first_sug")}
                  HAVING COUNT(*) > :busy) b
              ON b.client = s.client AND b.h = {d.hour("s.first_sug")}""",
            p,
        ),
        ("CREATE INDEX rpt_busy_sid ON rpt_busy (session_id)", {}),
    ]
    from_events: list[tuple[str, dict]] = [
        ("CREATE INDEX rpt_ev_sid ON rpt_ev (session_id, type, ts, article_id, helpful)", {}),
        (
            f"""CREATE TEMP TABLE rpt_e AS
            SELECT session_id, MIN(ts) AS first_ev,
                   MIN(CASE WHEN type = 'suggestions_shown' THEN ts END) AS shown_at,
                   MAX(CASE WHEN type = 'article_opened' AND article_id IS NOT NULL AND article_id <> ''
                       THEN 1 ELSE 0 END) AS opened,
                   MAX(CASE WHEN type = 'feedback' AND helpful = :yes THEN 1 ELSE 0 END) AS helpful,
                   MAX(CASE WHEN type = 'feedback' AND helpful IS NOT NULL THEN 1 ELSE 0 END) AS gave_feedback,
                   MAX(CASE WHEN type IN {SUBMIT} THEN 1 ELSE 0 END) AS submitted,
                   MIN(CASE WHEN type IN {AFTER} THEN ts END) AS first_after, COUNT(*) AS n_ev
            FROM rpt_ev GROUP BY session_id""",
            p,
        ),
        ("CREATE INDEX rpt_e_sid ON rpt_e (session_id)", {}),
        (
            f"""CREATE TEMP TABLE rpt_burst AS
            SELECT session_id FROM (SELECT session_id, COUNT(*) AS c FROM rpt_ev
                                    WHERE session_id IN (SELECT session_id FROM rpt_e WHERE n_ev > :burst)
                                    GROUP BY session_id, {d.second("ts")}) x
            GROUP BY session_id HAVING MAX(c) > :burst""",
            p,
        ),
        ("CREATE INDEX rpt_burst_sid ON rpt_burst (session_id)", {}),
    ]

    # stage 3: one row per session of the period (rpt_p); on SQLite in two halves side by side
    # (by the last character of the session id), rpt_p0 and rpt_p1
    def joined(k: str) -> list[tuple[str, dict]]:
        def part(col: str) -> str:
            return f"unicode(substr({col}, -1)) % 2 = {k}" if k else "1 = 1"

        return [
            (
                f"""CREATE TEMP TABLE rpt_sub{k} AS
            SELECT f.session_id,
                   MAX(CASE WHEN e.shown_at IS NOT NULL AND f.ts >= e.shown_at AND f.ts <= {d.plus("e.shown_at", w)}
                       THEN 1 ELSE 0 END) AS sub_shown,
                   MAX(CASE WHEN s.eligible_at IS NOT NULL AND f.ts >= s.eligible_at
                            AND f.ts <= {d.plus("s.eligible_at", w)} THEN 1 ELSE 0 END) AS sub_elig
            FROM rpt_ev f LEFT JOIN rpt_e e ON e.session_id = f.session_id
            LEFT JOIN rpt_s s ON s.session_id = f.session_id
            WHERE f.type IN {SUBMIT} AND {part("f.session_id")} GROUP BY f.session_id""",
                p,
            ),
            (f"CREATE INDEX rpt_sub{k}_sid ON rpt_sub{k} (session_id)", {}),
            (
                f"""CREATE TEMP TABLE rpt_p{k} AS SELECT * FROM (
            SELECT k.session_id, COALESCE(s.n_sug, 0) AS n_sug, s.first_sug, s.eligible_at, s.variant, s.channel,
                   s.last_intent, COALESCE(s.last_abstained, 0) AS last_abstained, s.last_reason, s.last_query,
                   e.shown_at, COALESCE(e.opened, 0) AS opened, COALESCE(e.helpful, 0) AS helpful,
                   COALESCE(e.gave_feedback, 0) AS gave_feedback, COALESCE(e.submitted, 0) AS submitted,
                   {_least("s.first_sug", "e.first_ev")} AS start,
                   {d.plus("s.eligible_at", w)} AS eligible_end,
                   COALESCE(u.sub_shown, 0) AS sub_shown, COALESCE(u.sub_elig, 0) AS sub_elig,
                   CASE WHEN s.n_sug > :max_sug THEN 'too_many_suggests'
                        WHEN b.session_id IS NOT NULL THEN 'event_burst'
                        WHEN e.first_after IS NOT NULL
                             AND (s.first_sug IS NULL OR e.first_after < {d.plus("s.first_sug", -skew)})
                             THEN 'events_before_suggest'
                        WHEN y.session_id IS NOT NULL THEN 'busy_client' END AS flag,
                   CASE WHEN e.shown_at IS NOT NULL AND {d.plus("e.shown_at", w)} <= :as_of THEN 1 ELSE 0 END
                       AS closed
            FROM (SELECT session_id FROM rpt_e WHERE {part("session_id")}
                  UNION ALL SELECT session_id FROM rpt_s a WHERE {part("a.session_id")}
                            AND NOT EXISTS (SELECT 1 FROM rpt_e b WHERE b.session_id = a.session_id)) k
            LEFT JOIN rpt_s s ON s.session_id = k.session_id
            LEFT JOIN rpt_e e ON e.session_id = k.session_id
            LEFT JOIN rpt_burst b ON b.session_id = k.session_id
            LEFT JOIN rpt_sub{k} u ON u.session_id = k.session_id
            LEFT JOIN rpt_busy y ON y.session_id = k.session_id) x
            WHERE 1 = 1{period}""",
                p,
            ),
        ]

    engaged = "(opened = 1 OR helpful = 1)"
    calls_range = rng("created_at", "since", "until")
    ok = "flag IS NULL"
    queries = {
        "flags": ("SELECT flag, COUNT(*) FROM rpt_p WHERE flag IS NOT NULL GROUP BY flag", {}),
        "head": (
            f"""SELECT COUNT(*), COALESCE(SUM(CASE WHEN n_sug > 0 THEN 1 ELSE 0 END), 0),
                   COALESCE(SUM(CASE WHEN shown_at IS NOT NULL THEN 1 ELSE 0 END), 0), COALESCE(SUM(closed), 0),
                   COALESCE(SUM(CASE WHEN closed = 1 AND opened = 1 THEN 1 ELSE 0 END), 0),
                   COALESCE(SUM(gave_feedback), 0),
                   COALESCE(SUM(CASE WHEN gave_feedback = 1 AND helpful = 1 THEN 1 ELSE 0 END), 0),
                   COALESCE(SUM(CASE WHEN closed = 1 AND {engaged} AND sub_shown = 0 THEN 1 ELSE 0 END), 0),
                   COALESCE(SUM(CASE WHEN closed = 1 AND helpful = 1 AND sub_shown = 0 THEN 1 ELSE 0 END), 0),
                   MIN(start), MAX(start)
            FROM rpt_p WHERE {ok}""",
            {},
        ),
        ("variants"): (f"SELECT COALESCE(variant, '(no suggest)'), COUNT(*) FROM rpt_p WHERE {ok} GROUP BY 1", {}),
        "incremental": (
            f"""SELECT COALESCE(channel, 'form'), variant, SUM(CASE WHEN eligible_end > :as_of THEN 1 ELSE 0 END),
                   SUM(CASE WHEN eligible_end <= :as_of THEN 1 ELSE 0 END),
                   SUM(CASE WHEN eligible_end <= :as_of AND sub_elig = 1 THEN 1 ELSE 0 END)
            FROM rpt_p WHERE {ok} AND eligible_at IS NOT NULL AND variant IN ('treatment', 'control')
            GROUP BY 1, 2""",
            p,
        ),
        "abstention": (
            f"""SELECT CASE WHEN abstained = :yes THEN COALESCE(NULLIF(reason, ''), 'unknown') END, COUNT(*)
            FROM rpt_sug
            WHERE (session_id IS NULL OR session_id IN (SELECT session_id FROM rpt_p WHERE {ok})){calls_range}
            GROUP BY 1""",
            p,
        ),
    }
    breakdown = f"""COUNT(*), SUM(last_abstained), SUM(submitted),
        SUM(CASE WHEN shown_at IS NOT NULL AND closed = 0 THEN 1 ELSE 0 END), SUM(closed),
        SUM(CASE WHEN closed = 1 AND {engaged} THEN 1 ELSE 0 END),
        SUM(CASE WHEN closed = 1 AND {engaged} AND sub_shown = 0 THEN 1 ELSE 0 END)"""
    queries["by_intent"] = (
        f"""SELECT CASE WHEN last_intent IS NULL OR last_intent = '' THEN '(none)' ELSE last_intent END AS k,
                   {breakdown} FROM rpt_p WHERE {ok} GROUP BY 1""",
        {},
    )
    queries["by_day"] = (f"SELECT {d.day('start')} AS k, {breakdown} FROM rpt_p WHERE {ok} GROUP BY 1", {})
    closed_sessions = f"(SELECT session_id FROM rpt_p WHERE {ok} AND closed = 1)"
    queries["art_shown"] = (
        f"""SELECT value, COUNT(*) FROM (
              SELECT DISTINCT e.session_id, j.value AS value
              FROM rpt_ev e JOIN rpt_sug r ON r.request_id = e.request_id, {d.elements("r.shown")}
              WHERE e.type = 'suggestions_shown' AND e.session_id IN {closed_sessions}) x
            GROUP BY value""",
        {},
    )
    # each (session, article) first opened, and whether a ticket followed within the window: a
    # join, not a correlated subquery (PostgreSQL would scan the events once per row)
    queries["art_opened"] = (
        f"""SELECT article_id, COUNT(*), SUM(after) FROM (
              SELECT o.session_id, o.article_id, MAX(CASE WHEN f.session_id IS NULL THEN 0 ELSE 1 END) AS after
              FROM (SELECT session_id, article_id, MIN(ts) AS first_open FROM rpt_ev
                    WHERE type = 'article_opened' AND article_id IS NOT NULL AND article_id <> ''
                      AND session_id IN {closed_sessions}
                    GROUP BY session_id, article_id) o
              LEFT JOIN rpt_ev f ON f.session_id = o.session_id AND f.type IN {SUBMIT}
                   AND f.ts >= o.first_open AND f.ts <= {d.plus("o.first_open", w)}
              GROUP BY o.session_id, o.article_id) x
            GROUP BY article_id""",
        {},
    )
    queries["art_feedback"] = (
        f"""SELECT article_id, SUM(CASE WHEN helpful = :yes THEN 1 ELSE 0 END),
                   SUM(CASE WHEN helpful = :no THEN 1 ELSE 0 END)
            FROM rpt_ev WHERE type = 'feedback' AND article_id IS NOT NULL AND article_id <> ''
              AND helpful IS NOT NULL AND session_id IN {closed_sessions}
            GROUP BY article_id""",
        p,
    )
    gap_why = """CASE WHEN n_sug > 0 AND last_abstained = 1 THEN 'abstained:' || COALESCE(last_reason, 'None')
                       WHEN n_sug > 0 AND closed = 1 AND sub_shown = 1 THEN 'ticket_after_suggestions' END"""
    queries["gap_counts"] = (
        f"SELECT why, COUNT(*) FROM (SELECT {gap_why} AS why FROM rpt_p WHERE {ok}) x "
        "WHERE why IS NOT NULL GROUP BY why",
        {},
    )

    # the content-gap queries, in session order: every one, or an even sample of max_gap_queries
    queries["gaps"] = (
        f"""WITH g AS (SELECT last_query, last_intent, why, ROW_NUMBER() OVER (ORDER BY start, session_id{C}) AS rn
                       FROM (SELECT last_query, last_intent, start, session_id, {gap_why} AS why
                             FROM rpt_p WHERE {ok}) x
                       WHERE why IS NOT NULL),
                 k AS (SELECT CASE WHEN COUNT(*) > :cap THEN (COUNT(*) + :cap - 1) / :cap ELSE 1 END AS stride FROM g)
            SELECT last_query, why, last_intent FROM g, k
            WHERE (rn - 1) - ((rn - 1) / stride) * stride = 0 ORDER BY rn""",
        {"cap": max(1, max_gap_queries)},
    )
    # stage 4, side by side: the figures per article (0) and the others (1)
    per_article = ["art_shown", "art_opened", "art_feedback"]
    others = [n for n in queries if n not in per_article]
    figures = [[queries[n] for n in per_article], [queries[n] for n in others]]
    if d.sqlite:
        halves = "CREATE TEMP VIEW rpt_p AS SELECT * FROM rpt_p0 UNION ALL SELECT * FROM rpt_p1"
        stages = [
            [_place(d, copy[0:1], "r0") + _place(d, copy[1:2], "r1") + copy[2:]],
            [_place(d, from_calls, "r0"), _place(d, from_events, "r1")],
            [_place(d, joined("0"), "r2"), _place(d, joined("1"), "r3")],
            [[(halves, {}), *branch] for branch in figures],
        ]
        flat = store.query_stages(stages)
        tail = flat[len(flat) - len(queries) - 2 :]
        results = tail[1 : 1 + len(per_article)] + tail[2 + len(per_article) :]
    else:
        steps = copy + from_calls + from_events + joined("") + figures[0] + figures[1]
        flat = _on_postgres(store, steps)
        results = flat[len(flat) - len(queries) :]
    names = ["rejected", *per_article, *others]
    results = [flat[2], *results]
    r = dict(zip(names, results, strict=True))
    gap_rows = r["gaps"]

    (n, with_sug, shown, closed, clicked, fb, helpful, deflected, self_rep, first, last) = r["head"][0]
    cells = {(ch, v): (pend or 0, n_ or 0, x or 0) for ch, v, pend, n_, x in r["incremental"]}
    calls = sum(k for _, k in r["abstention"])
    reasons = {why: k for why, k in r["abstention"] if why is not None}

    def breakdowns(rows) -> list[Breakdown]:
        return [
            Breakdown(key, int(ns), int(sh), int(en), int(de), int(su), int(ab), int(pe))
            for key, ns, ab, su, pe, sh, en, de in rows
        ]

    articles: dict[str, ArticleFigures] = {}
    for a, k in r["art_shown"]:
        articles.setdefault(a, ArticleFigures(a)).shown = int(k)
    for a, k, then in r["art_opened"]:
        f = articles.setdefault(a, ArticleFigures(a))
        f.opened, f.opened_then_submitted, f.opened_not_submitted = int(k), int(then), int(k) - int(then)
    for a, yes, no in r["art_feedback"]:
        f = articles.setdefault(a, ArticleFigures(a))
        f.helpful, f.not_helpful = int(yes), int(no)
    flagged = Counter({k: int(v) for k, v in r["flags"]})
    first_t, last_t = d.time(first), d.time(last)
    return DeflectionMeasurement(
        period=Period(since=since, until=until, as_of=as_of, window=window, first_session=first_t, last_session=last_t),
        sessions=int(n),
        sessions_with_suggest=int(with_sug),
        sessions_by_variant={k: int(v) for k, v in sorted(r["variants"], key=lambda kv: str(kv[0]))},
        sessions_shown=int(shown),
        sessions_shown_closed=int(closed),
        clicked_sessions=int(clicked),
        feedback_sessions=int(fb),
        helpful_sessions=int(helpful),
        observed_deflected_sessions=int(deflected),
        self_reported_deflected_sessions=int(self_rep),
        incremental=experiment_by_channel(pool_channels(cells)).get("", Incremental(0, 0, 0, 0, 0)),
        incremental_by_channel=experiment_by_channel(cells),
        abstention=Abstention(int(calls), dict(sorted((k, int(v)) for k, v in reasons.items()))),
        by_intent=sorted(breakdowns(r["by_intent"]), key=lambda b: (-b.sessions, b.key)),
        by_article=sorted(articles.values(), key=lambda a: (-a.shown, -a.opened, a.article_id)),
        by_day=sorted(breakdowns(r["by_day"]), key=lambda b: b.key),
        gap_queries=[GapQuery(q, why, intent) for q, why, intent in gap_rows],
        integrity=Integrity(
            rejected_by_reason=dict(sorted((k, int(v)) for k, v in r["rejected"])),
            flagged_by_reason={k: flagged[k] for k in FLAG_REASONS if flagged[k]},
        ),
        gap_counts={k: int(v) for k, v in sorted(r["gap_counts"])},
    )
