"""The support lead's deflection report: JSON, CSV and one self-contained HTML file.

All three carry the same figures (a :class:`~deflect.eval.deflection.DeflectionMeasurement`
plus the content-gap themes), held by one :class:`DeflectionReport`. The HTML embeds its
charts as inline SVG and its styles inline: it can be opened from disk or sent by e-mail,
and loads nothing from the network.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from deflect.eval.charts import CSS, e
from deflect.eval.deflection import Breakdown, DeflectionMeasurement, Incremental, Money, TicketCosts, money
from deflect.eval.mail_report import MailSummary
from deflect.eval.themes import Theme

DEFINITIONS = [
    ("Shown", "the widget reported suggestions_shown; the attribution window starts there."),
    (
        "Observed deflection",
        "of shown sessions, opened an article or said it helped, and sent no form within the window.",
    ),
    ("Self-reported deflection", "of shown sessions, said 'helpful' and sent no form within the window."),
    (
        "Incremental deflection",
        "submit rate of the control group minus that of the treatment group, among sessions where the engine had "
        "something to show (the control group is shown nothing). 95% Wald interval. Only this figure says how many "
        "tickets suggestions really avoided: observed deflection also counts customers who gave up or wrote by e-mail.",
    ),
    ("Tickets avoided", "incremental deflection x eligible treatment sessions."),
    (
        "Saved",
        "tickets avoided x the cost per ticket of their channel (form, chat, e-mail), summed over the channels; "
        "its 95% interval adds the channels' variances.",
    ),
    ("Pending", "sessions whose attribution window has not closed yet; left out of every rate."),
    (
        "Not counted",
        "events the server rejected (no valid token for their session: forged, replayed from another session, "
        "backdated or expired) and sessions flagged as not a person (too many suggest calls, bursts of events, "
        "events before any suggestion, or one caller starting too many sessions in an hour).",
    ),
    ("Content gaps", "queries the engine abstained on, or that ended in a ticket after suggestions, grouped by theme."),
]


@dataclass(frozen=True)
class ContentGaps:
    """Queries abstained on or ending in a ticket after suggestions, grouped into themes."""

    queries: int
    abstained: int
    ticket_after_suggestions: int
    themes: list[Theme]

    def to_dict(self) -> dict:
        return {
            "queries": self.queries,
            "abstained": self.abstained,
            "ticket_after_suggestions": self.ticket_after_suggestions,
            "themes": [t.to_dict() for t in self.themes],
        }


@dataclass(frozen=True)
class DeflectionReport:
    """What ``deflect report`` renders: the measurement, article titles and content gaps.

    :meth:`to_dict` is the JSON report; its keys are those of
    :meth:`DeflectionMeasurement.to_dict` (without ``gap_queries``, which become
    ``content_gaps``) plus ``title`` and ``definitions``, and each article row gains its
    ``title``."""

    measurement: DeflectionMeasurement
    content_gaps: ContentGaps
    title: str = "Deflection report"
    article_titles: dict[str, str] = field(default_factory=dict)
    #: tickets avoided priced per channel (None when no cost per ticket is configured)
    money: Money | None = None
    #: inbound e-mail: outcomes, acknowledgements, first-response time (None: no mail)
    mail: MailSummary | None = None

    def article_title(self, article_id: str) -> str:
        return self.article_titles.get(article_id, "")

    def to_dict(self) -> dict:
        out = self.measurement.to_dict()
        del out["gap_queries"]
        out["by_article"] = [{**a, "title": self.article_title(a["article_id"])} for a in out["by_article"]]
        out["title"] = self.title
        out["content_gaps"] = self.content_gaps.to_dict()
        out["money"] = self.money.to_dict() if self.money else None
        out["email"] = self.mail.to_dict() if self.mail else None
        out["definitions"] = dict(DEFINITIONS)
        return out


def build_report(
    measured: DeflectionMeasurement,
    *,
    vectors: Callable | None = None,
    titles: dict[str, str] | None = None,
    title: str = "Deflection report",
    costs: TicketCosts | None = None,
    mail: MailSummary | None = None,
) -> DeflectionReport:
    """The report: the measured figures plus content-gap themes (``vectors`` groups them by
    meaning), article titles (``titles``: article id -> title, from the current index) and
    what the tickets avoided are worth (``costs``; :func:`~deflect.eval.deflection.money`)."""
    from deflect.eval.themes import themes

    gaps = measured.gap_queries
    counts = measured.gap_counts or Counter(g.why for g in gaps)  # exact, even for a sample of the queries
    return DeflectionReport(
        measurement=measured,
        content_gaps=ContentGaps(
            queries=sum(counts.values()),
            abstained=sum(v for k, v in counts.items() if k.startswith("abstained")),
            ticket_after_suggestions=counts.get("ticket_after_suggestions", 0),
            themes=themes([g.query for g in gaps], [g.why for g in gaps], vectors=vectors),
        ),
        title=title,
        article_titles=dict(titles or {}),
        money=money(measured, costs) if costs else None,
        mail=mail if mail is not None and mail.messages else None,
    )


def to_json(report: DeflectionReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str)


class _SafeWriter:
    """A ``csv.writer`` whose text cells cannot run as a spreadsheet formula: a cell that
    begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (and is not a number)
    gets a leading ``'``, as OWASP recommends for CSV exports. Article titles, intent names
    and customers' queries come from outside, and a support lead opens this in Excel."""

    def __init__(self, buf: io.StringIO) -> None:
        self._w = csv.writer(buf)

    def writerow(self, row) -> None:
        self._w.writerow([safe_cell(c) for c in row])


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def safe_cell(cell):
    """``cell`` as a spreadsheet shows it and never evaluates it (see :class:`_SafeWriter`)."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_START) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def to_csv(report: DeflectionReport) -> str:
    """Long format, one figure per row: ``section, key, metric, value``. Safe to open in a
    spreadsheet (:func:`safe_cell`)."""
    m = report.measurement
    buf = io.StringIO()
    w = _SafeWriter(buf)
    w.writerow(["section", "key", "metric", "value"])
    for k, v in m.summary().items():
        w.writerow(["summary", "", k, _plain(v)])
    for k, v in m.period.to_dict().items():
        w.writerow(["period", "", k, _plain(v)])
    for k, v in m.incremental.to_dict().items():
        if isinstance(v, list):
            w.writerow(["incremental", "", f"{k}_low", _plain(v[0])])
            w.writerow(["incremental", "", f"{k}_high", _plain(v[1])])
        else:
            w.writerow(["incremental", "", k, _plain(v)])
    for ch, inc in m.incremental_by_channel.items():
        for k, v in inc.to_dict().items():
            if isinstance(v, list):
                w.writerow(["incremental_by_channel", ch, f"{k}_low", _plain(v[0])])
                w.writerow(["incremental_by_channel", ch, f"{k}_high", _plain(v[1])])
            elif k != "note":
                w.writerow(["incremental_by_channel", ch, k, _plain(v)])
    if report.mail:
        for k, v in report.mail.to_dict().items():
            if isinstance(v, dict):
                for kk, vv in sorted(v.items()):
                    w.writerow(["email", k, kk, _plain(vv)])
            else:
                w.writerow(["email", "", k, _plain(v)])
    if report.money:
        cash = report.money
        w.writerow(["money", "", "currency", cash.currency])
        w.writerow(["money", "", "saved", _plain(cash.saved)])
        if cash.saved_ci95:
            w.writerow(["money", "", "saved_low", _plain(cash.saved_ci95[0])])
            w.writerow(["money", "", "saved_high", _plain(cash.saved_ci95[1])])
        for c in cash.channels:
            w.writerow(["money", c.channel, "cost_per_ticket", _plain(c.cost_per_ticket)])
            w.writerow(["money", c.channel, "saved", _plain(c.saved)])
            if c.saved_ci95:
                w.writerow(["money", c.channel, "saved_low", _plain(c.saved_ci95[0])])
                w.writerow(["money", c.channel, "saved_high", _plain(c.saved_ci95[1])])
    for k, n in m.sessions_by_variant.items():
        w.writerow(["sessions_by_variant", k, "sessions", n])
    a = m.abstention
    for k, v in (("calls", a.calls), ("abstained", a.abstained), ("rate", a.rate)):
        w.writerow(["abstention", "", k, _plain(v)])
    for reason, n in a.by_reason.items():
        w.writerow(["abstention", reason, "calls", n])
        w.writerow(["abstention", reason, "rate", _plain(a.reason_rate(reason))])
    for section, rows in (("by_intent", m.by_intent), ("by_day", m.by_day)):
        for b in rows:
            for metric, value in b.to_dict().items():
                if metric != "key":
                    w.writerow([section, b.key, metric, _plain(value)])
    for art in m.by_article:
        for metric, value in {**art.to_dict(), "title": report.article_title(art.article_id)}.items():
            if metric != "article_id":
                w.writerow(["by_article", art.article_id, metric, _plain(value)])
    g = m.integrity
    w.writerow(["not_counted", "", "rejected_events", g.rejected_events])
    for reason, n in g.rejected_by_reason.items():
        w.writerow(["not_counted", reason, "rejected_events", n])
    w.writerow(["not_counted", "", "flagged_sessions", g.flagged_sessions])
    for reason, n in g.flagged_by_reason.items():
        w.writerow(["not_counted", reason, "flagged_sessions", n])
    for t in report.content_gaps.themes:
        w.writerow(["content_gaps", t.name, "count", t.count])
        w.writerow(["content_gaps", t.name, "share", _plain(t.share)])
        w.writerow(["content_gaps", t.name, "examples", " | ".join(t.examples)])
    return buf.getvalue()


def _plain(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


# ---- HTML -----------------------------------------------------------------------------------
def _pct(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def _num(v: float | int | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if isinstance(v, int) or abs(v) >= 100 else f"{v:,.1f}"


def _when(t: datetime | None) -> str | None:
    """A time as ``2026-11-08 18:30 UTC``."""
    return t.strftime("%Y-%m-%d %H:%M UTC") if t is not None else None


def _money(v: float | None, currency: str, digits: int = 0) -> str:
    return "-" if v is None else f"{currency} {v:,.{digits}f}"


def _range(ci: tuple[float, float] | None, fmt: Callable) -> str:
    return f"{fmt(ci[0])} to {fmt(ci[1])}" if ci else "-"


def _priced(cash: Money | None, channel: str):
    return next((c for c in cash.channels if c.channel == channel), None) if cash else None


def _svg_ab(inc: Incremental) -> str:
    """Submit rates of the two groups as bars, with the difference and its interval."""
    c, t = inc.control_submit_rate, inc.treatment_submit_rate
    if c is None or t is None:
        return "<p class='muted'>No control group data: set control_share to measure incremental deflection.</p>"
    w, h, left = 600, 150, 190
    scale = (w - left - 60) / max(c, t, 0.01)
    bars = ""
    for i, (name, v, n, color) in enumerate(
        (
            ("control", c, inc.control_sessions, "#9aa5b1"),
            ("treatment", t, inc.treatment_sessions, "var(--accent)"),
        )
    ):
        y = 20 + i * 50
        bars += (
            f"<text x='{left - 8}' y='{y + 20}' text-anchor='end'>{name} (n={n:,})</text>"
            f"<rect x='{left}' y='{y}' width='{v * scale:.1f}' height='30' fill='{color}' rx='3'/>"
            f"<text x='{left + v * scale + 6:.1f}' y='{y + 20}'>{_pct(v)}</text>"
        )
    lo, hi = inc.ci95
    est = inc.incremental_deflection
    return (
        f"<svg role='img' aria-label='Submit rate by group' viewBox='0 0 {w} {h}' width='{w}' height='{h}' "
        f"xmlns='http://www.w3.org/2000/svg' font-size='13'>{bars}"
        f"<text x='{left}' y='{h - 12}'>difference {_pct(est)} (95% CI {_pct(lo)} to {_pct(hi)})</text></svg>"
    )


def _svg_trend(days: Sequence[Breakdown]) -> str:
    """Sessions per day (bars) and observed deflection rate (line)."""
    if not days:
        return "<p class='muted'>No sessions in this period.</p>"
    w, h, pad = 720, 220, 40
    n = len(days)
    bw = (w - 2 * pad) / n
    top = max(d.sessions for d in days) or 1
    parts = []
    pts = []
    for i, d in enumerate(days):
        x = pad + i * bw
        bh = (h - 2 * pad) * d.sessions / top
        parts.append(
            f"<rect x='{x + 1:.1f}' y='{h - pad - bh:.1f}' width='{max(bw - 2, 1):.1f}' height='{bh:.1f}' "
            f"fill='#d5dbe3'><title>{e(d.key)}: {d.sessions} sessions</title></rect>"
        )
        r = d.observed_deflection_rate
        if r is not None:
            pts.append(f"{x + bw / 2:.1f},{h - pad - (h - 2 * pad) * r:.1f}")
    line = f"<polyline points='{' '.join(pts)}' fill='none' stroke='var(--accent)' stroke-width='2'/>" if pts else ""
    labels = (
        f"<text x='{pad}' y='{h - 12}'>{e(days[0].key)}</text>"
        f"<text x='{w - pad}' y='{h - 12}' text-anchor='end'>{e(days[-1].key)}</text>"
        f"<text x='{pad}' y='14'>bars: sessions per day (max {top:,}); line: observed deflection rate (0-100%)</text>"
    )
    return (
        f"<svg role='img' aria-label='Sessions and deflection per day' viewBox='0 0 {w} {h}' width='{w}' "
        f"height='{h}' xmlns='http://www.w3.org/2000/svg' font-size='12'>{''.join(parts)}{line}{labels}</svg>"
    )


def _svg_bars(items: list[tuple[str, float]], label: str) -> str:
    if not items:
        return "<p class='muted'>None.</p>"
    w, rowh, left = 520, 26, 150
    h = rowh * len(items) + 10
    top = max(v for _, v in items) or 1
    body = ""
    for i, (name, v) in enumerate(items):
        y = 5 + i * rowh
        bw = (w - left - 70) * v / top
        body += (
            f"<text x='{left - 8}' y='{y + 16}' text-anchor='end'>{e(name)}</text>"
            f"<rect x='{left}' y='{y + 3}' width='{bw:.1f}' height='{rowh - 8}' fill='var(--accent)' rx='2'/>"
            f"<text x='{left + bw + 6:.1f}' y='{y + 16}'>{_pct(v)}</text>"
        )
    return (
        f"<svg role='img' aria-label='{e(label)}' viewBox='0 0 {w} {h}' width='{w}' height='{h}' "
        f"xmlns='http://www.w3.org/2000/svg' font-size='12'>{body}</svg>"
    )


Column = tuple[str, Callable[[Any], Any], Callable[[Any], str]]  # title, value of a row, format


def _table(rows: Sequence[Any], cols: Sequence[Column], limit: int = 50) -> str:
    if not rows:
        return "<p class='muted'>None in this period.</p>"
    head = "".join(f"<th>{e(title)}</th>" for title, _, _ in cols)
    body = ""
    for r in rows[:limit]:
        body += "<tr>" + "".join(f"<td>{fmt(get(r))}</td>" for _, get, fmt in cols) + "</tr>"
    more = f"<p class='muted'>{len(rows) - limit} more rows in the JSON and CSV.</p>" if len(rows) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


_CSS = (
    CSS
    + """
:root{--bg:#fff;--card:#f6f8fa}h1{margin-bottom:.2rem}table{width:100%}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:.6rem}
.card{background:var(--card);border-radius:6px;padding:.7rem}.card b{display:block;font-size:1.35rem}
.card.key{outline:2px solid var(--accent)}
td.warn{color:#b35900;font-weight:600}dt{font-weight:600}dd{margin:0 0 .5rem 0}
"""
)


def _not_counted(g) -> list[tuple[str, str, int]]:
    rows = [("rejected events", k, v) for k, v in g.rejected_by_reason.items()]
    return rows + [("flagged sessions", k, v) for k, v in g.flagged_by_reason.items()]


def _warn(v: int) -> str:
    return f"<span class='warn'>{_num(v)}</span>"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _mail_section(mail: MailSummary | None) -> str:
    """The e-mail section (empty without inbound mail)."""
    if mail is None:
        return ""
    e = html.escape
    pairs = lambda d: ", ".join(f"{e(k)} {v:,}" for k, v in sorted(d.items())) or "none"  # noqa: E731
    unconfirmed = mail.replies.get("unconfirmed", 0)
    return f"""<section id="email"><h2>E-mail</h2>
<p>{mail.messages:,} messages in {mail.threads:,} threads ({mail.followups:,} further messages on a thread).
Outcomes: {pairs(mail.by_outcome)}.</p>
<p>Acknowledgements: {pairs(mail.replies)}; {mail.with_articles:,} carried articles. Not acknowledged, by reason:
{pairs(mail.not_answered)}.{
        f" <b>{unconfirmed:,} unconfirmed</b> (interrupted while sending, never sent again:"
        " see <code>deflect mail status</code>)."
        if unconfirmed
        else ""
    }</p>
<p>First-response time (first message to acknowledgement, {mail.first_responses:,} threads): median
{_duration(mail.first_response_median)}, 90th percentile {_duration(mail.first_response_p90)}.</p></section>"""


def to_html(report: DeflectionReport) -> str:
    """One self-contained HTML page (inline CSS and SVG, no script, nothing fetched)."""
    m = report.measurement
    inc = m.incremental
    p = m.period
    ci, tci = inc.ci95, inc.tickets_avoided_ci95
    cards = [
        ("Sessions", _num(m.sessions), f"{m.sessions_without_suggest:,} without a suggest call"),
        ("Shown suggestions", _num(m.sessions_shown), f"{m.pending:,} pending (window open)"),
        ("Click-through", _pct(m.click_through_rate), "shown sessions that opened an article"),
        ("Helpful rate", _pct(m.helpful_rate), f"of {m.feedback_sessions:,} sessions with feedback"),
        ("Observed deflection", _pct(m.observed_deflection_rate), "opened or helpful, no ticket in window"),
        ("Self-reported deflection", _pct(m.self_reported_deflection_rate), "said helpful, no ticket"),
        (
            "Incremental deflection",
            _pct(inc.incremental_deflection),
            f"95% CI {_pct(ci[0])} to {_pct(ci[1])}" if ci else "needs a control group",
        ),
        (
            "Tickets avoided",
            _num(inc.tickets_avoided),
            f"95% CI {_num(tci[0])} to {_num(tci[1])}" if tci else "needs a control group",
        ),
    ]
    cash = report.money
    if cash is not None:
        sci = cash.saved_ci95
        cards.append(
            (
                "Saved",
                _money(cash.saved, cash.currency),
                f"95% CI {_money(sci[0], cash.currency)} to {_money(sci[1], cash.currency)}"
                if sci
                else "needs a control group and a cost per ticket",
            )
        )
    g = m.integrity
    cards.append(
        (
            "Not counted",
            f"{g.rejected_events:,} / {g.flagged_sessions:,}",
            "rejected events / flagged sessions",
        )
    )
    cards_html = "".join(
        f"<div class='card{' key' if title.startswith(('Incremental', 'Tickets', 'Saved')) else ''}'>"
        f"<span class='muted'>{e(title)}</span><b>{e(value)}</b><span class='muted'>{e(sub)}</span></div>"
        for title, value, sub in cards
    )
    ab = m.abstention
    reasons = [(k, ab.reason_rate(k)) for k, _ in sorted(ab.by_reason.items(), key=lambda kv: -kv[1])]
    pct, num, txt = _pct, _num, e
    intent_cols: list[Column] = [
        ("intent", lambda b: b.key, txt),
        ("sessions", lambda b: b.sessions, num),
        ("shown", lambda b: b.shown, num),
        ("observed deflection", lambda b: b.observed_deflection_rate, pct),
        ("tickets", lambda b: b.submitted, num),
        ("abstained", lambda b: b.abstained, num),
    ]
    article_rows = sorted(m.by_article, key=lambda a: (-a.opened_then_submitted, -a.shown))
    article_cols: list[Column] = [
        ("article", lambda a: a.article_id, txt),
        ("title", lambda a: report.article_title(a.article_id), txt),
        ("shown", lambda a: a.shown, num),
        ("opened", lambda a: a.opened, num),
        ("open rate", lambda a: a.open_rate, pct),
        ("helpful", lambda a: a.helpful, num),
        ("not helpful", lambda a: a.not_helpful, num),
        ("opened, then ticket anyway", lambda a: a.opened_then_submitted, _warn),
        ("ticket after open", lambda a: a.ticket_after_open_rate, pct),
    ]
    not_counted_cols: list[Column] = [
        ("what", lambda r: r[0], txt),
        ("reason", lambda r: r[1], txt),
        ("count", lambda r: r[2], num),
    ]
    channel_rows = [(ch, inc, _priced(cash, ch)) for ch, inc in m.incremental_by_channel.items()]
    channel_cols: list[Column] = [
        ("channel", lambda r: r[0], txt),
        ("treatment", lambda r: r[1].treatment_sessions, num),
        ("control", lambda r: r[1].control_sessions, num),
        ("incremental deflection", lambda r: r[1].incremental_deflection, pct),
        ("95% CI", lambda r: _range(r[1].ci95, _pct), txt),
        ("tickets avoided", lambda r: r[1].tickets_avoided, num),
        ("tickets 95% CI", lambda r: _range(r[1].tickets_avoided_ci95, _num), txt),
    ]
    if cash is not None:
        cur = cash.currency
        channel_cols += [
            ("cost per ticket", lambda r: _money(r[2].cost_per_ticket if r[2] else None, cur, 2), txt),
            ("saved", lambda r: _money(r[2].saved if r[2] else None, cur), txt),
            ("saved 95% CI", lambda r: _range(r[2].saved_ci95 if r[2] else None, lambda v: _money(v, cur)), txt),
        ]
    money_notes = "".join(f"<p class='muted'>{e(n)}</p>" for n in (cash.notes if cash else []))
    gaps = report.content_gaps
    theme_cols: list[Column] = [
        ("theme", lambda t: t.name, txt),
        ("queries", lambda t: t.count, num),
        ("share", lambda t: t.share, pct),
        ("why", lambda t: ", ".join(f"{k} {v}" for k, v in t.why.items()), txt),
        ("examples", lambda t: "<br>".join(e(x) for x in t.examples), str),
    ]
    start = _when(p.since or p.first_session) or "start"
    period = f"{start} to {_when(p.until or p.last_session) or 'now'}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{e(report.title)}</title><style>{_CSS}</style></head><body>
<h1>{e(report.title)}</h1>
<p class="muted">Sessions from {e(period)}; data as of {e(_when(p.as_of))}; attribution window
{p.window_hours:g} h. Variants: {e(", ".join(f"{k} {v:,}" for k, v in m.sessions_by_variant.items()))}.</p>
<section id="headline"><h2>Headline</h2><div class="cards">{cards_html}</div></section>
<section id="incremental"><h2>Incremental deflection (control vs treatment)</h2>
<p>Among sessions where the engine had something to show, the share that sent the form (for e-mail: wrote
again on the thread) within the window.
The control group was shown nothing. {inc.pending:,} eligible sessions are still pending.</p>
{_svg_ab(inc)}
<h3>By channel</h3>
{_table(channel_rows, channel_cols)}{money_notes}</section>
{_mail_section(report.mail)}
<section id="not-counted"><h2>Not counted</h2>
<p>{g.rejected_events:,} events were rejected by the server and {g.flagged_sessions:,} sessions were flagged as not
a person; none of them is in any figure above.</p>
{_table(_not_counted(g), not_counted_cols)}
</section>
<section id="abstention"><h2>Abstention</h2>
<p>{ab.abstained:,} of {ab.calls:,} suggest calls ({_pct(ab.rate)}) showed nothing, by reason:</p>
{_svg_bars(reasons, "Abstention rate by reason")}</section>
<section id="trend"><h2>Per day</h2>{_svg_trend(m.by_day)}
{_table(m.by_day, [("day", lambda b: b.key, txt), *intent_cols[1:]], limit=400)}</section>
<section id="by-intent"><h2>By intent</h2>{_table(m.by_intent, intent_cols)}</section>
<section id="by-article"><h2>By article</h2>
<p>Sorted by how often a ticket was sent anyway after the article was opened: these articles did not answer.</p>
{_table(article_rows, article_cols)}</section>
<section id="content-gaps"><h2>Content gaps</h2>
<p>{gaps.queries:,} sessions: {gaps.abstained:,} abstained on, {gaps.ticket_after_suggestions:,} sent a
ticket after seeing suggestions. Grouped by theme (queries redacted before storage):</p>
{_table(gaps.themes, theme_cols)}</section>
<section id="definitions"><h2>How these figures are defined</h2><dl>
{"".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in DEFINITIONS)}</dl></section>
</body></html>
"""
