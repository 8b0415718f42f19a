"""`make bench` section ``mail``: inbound e-mail triage on the demo mailbox
(``examples/mail/demo.mbox``: 60 customers' messages in English, Traditional and Simplified
Chinese and Indonesian, with greetings, signatures, quoted history and HTML-only mail),
beside the same queries sent as the form sends them, in the same run, on the demo's
four-language index and intent model (built here as `make demo` builds them).

Figures, for both paths: the intent (against the hand label in ``X-Demo-Intent``) and the
queue it routes to (the demo's ``examples/mail/queues.json``, else ``support``), the
precision of the first article among the messages answered, the answering article in the
top 1 and top 3 of all messages, and the share answered (not abstained); and
messages per second through ``POST /v1/inbound`` (one client, in process: each message
recorded, triaged, and acknowledged into the outbox Maildir), beside ``POST /v1/suggest``
with the same texts.
"""

from __future__ import annotations

import email
import json
import mailbox
import subprocess
import sys
import time
from email import policy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOX = ROOT / "examples" / "mail" / "demo.mbox"


def _demo_home(work: Path) -> Path:
    home = work / "mail-home"
    kb = [str(ROOT / "examples" / "helpcenter")] + [
        str(ROOT / "examples" / lang / "helpcenter") for lang in ("zh-tw", "zh-cn", "id")
    ]
    intents = [str(ROOT / "examples" / "intents.csv")] + [
        str(ROOT / "examples" / lang / "intents.csv") for lang in ("zh-tw", "zh-cn", "id")
    ]
    cli = [sys.executable, "-m", "deflect.cli.main"]
    for args in (["ingest", *kb], ["train", *intents, "--oos-label", "out_of_scope", "--promote"]):
        subprocess.run([*cli, *args, "--home", str(home)], check=True, capture_output=True, cwd=ROOT)
    return home


def run(work: Path, row) -> list[str]:
    """The ``mail`` section; returns notes."""
    from fastapi.testclient import TestClient

    from deflect.api.main import create_app
    from deflect.config import Settings
    from deflect.engine import Engine, SuggestQuery
    from deflect.mail import parse_message, triage

    if not BOX.exists():
        return ["mail: examples/mail/demo.mbox is missing (python examples/mail/build.py makes it)"]
    home = _demo_home(work)
    queues = json.loads((ROOT / "examples" / "mail" / "queues.json").read_text(encoding="utf-8"))
    links = str(ROOT / "examples" / "intent_articles.json")
    settings = Settings(home=home, control_share=0.0, rate_limit_suggest="", rate_limit_suggest_session="",
                        mail_queues=queues, intent_articles=links)  # fmt: skip
    engine = Engine(settings)
    box = mailbox.mbox(BOX)
    raws = [box.get_bytes(k) for k in box.iterkeys()]
    cases = []
    for raw in raws:
        head = email.message_from_bytes(raw, policy=policy.default)
        if head.get("X-Demo-Article"):
            cases.append(
                (
                    raw,
                    str(head["X-Demo-Article"]),
                    str(head.get("X-Demo-Subject") or ""),
                    str(head["X-Demo-Query"]),
                    str(head["X-Demo-Intent"]),
                )  # fmt: skip
            )
    mail_top, form_top, mail_intent, form_intent = [], [], [], []
    for raw, _article, subject, query, _intent in cases:
        t, _, _ = triage(engine, parse_message(raw))
        mail_top.append([s["article_id"] for s in t.suggestions])
        mail_intent.append(t.intent or "out_of_scope")
        res = engine.suggest(SuggestQuery(subject=subject, description=query))
        form_top.append([s.article_id for s in res.suggestions])
        form_intent.append(res.intent.label if res.intent and not res.intent.out_of_scope else "out_of_scope")
    expected = [c[1] for c in cases]
    labels = [c[4] for c in cases]

    def queue(intent: str) -> str:
        return queues.get(intent, settings.mail_default_queue)

    def accuracy(predicted, key=lambda x: x):
        return sum(key(p) == key(t) for p, t in zip(predicted, labels, strict=True)) / len(labels)

    def figures(tops):
        pairs = list(zip(expected, tops, strict=True))
        n = len(pairs)
        answered = [(e, t) for e, t in pairs if t]
        return (
            sum(e in t[:1] for e, t in pairs) / n,
            sum(e in t[:3] for e, t in pairs) / n,
            sum(bool(t) for t in tops) / n,
            sum(e in t[:1] for e, t in answered) / len(answered) if answered else float("nan"),
        )

    m1, m3, ma, mp = figures(mail_top)
    f1, f3, fa, fp = figures(form_top)
    label = f"demo mailbox ({len(cases)} customers' messages)"
    row("mail", label, "intent accuracy", accuracy(mail_intent), f"form, same queries: {accuracy(form_intent):.3f}")
    row("mail", label, "queue accuracy", accuracy(mail_intent, queue),
        f"form, same queries: {accuracy(form_intent, queue):.3f}")  # fmt: skip
    row("mail", label, "precision@1 (of answered)", mp, f"form, same queries: {fp:.3f}")
    row("mail", label, "article@1", m1, f"form, same queries: {f1:.3f}")
    row("mail", label, "article@3", m3, f"form, same queries: {f3:.3f}")
    row("mail", label, "answered", ma, f"form, same queries: {fa:.3f}")
    with TestClient(create_app(settings, engine=engine)) as c:
        t0 = time.perf_counter()
        for raw, *_ in cases:
            assert c.post("/v1/inbound", content=raw, headers={"content-type": "message/rfc822"}).status_code == 200
        inbound = len(cases) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _, _, subject, query, _ in cases:
            assert c.post("/v1/suggest", json={"subject": subject, "description": query}).status_code == 200
        form = len(cases) / (time.perf_counter() - t0)
    row(
        "mail",
        "POST /v1/inbound, 1 client in process",
        "messages/s",
        inbound,
        f"POST /v1/suggest, same texts: {form:.1f}/s",
    )
    return [
        "mail: the demo's four-language index and intent model built as `make demo` does; the control group off; "
        "the form baseline sends each message's original subject and query (X-Demo-Subject, X-Demo-Query)"
    ]
